import Crypto
import Curl
import Foundation
import S3
import TestSupport
import Testing

/// Against the real SeaweedFS of the test run (it verifies SigV4, presigned URLs, the multipart
/// 5 MiB minimum and If-None-Match).
@Suite("S3 client against SeaweedFS")
struct S3ClientIntegrationTests {
    @Test func headBucketAnswersAndMissingBucketIsNamed() throws {
        let s3 = try S3Fixture()
        try s3.client.headBucket()
        let missing = S3Client(
            endpoint: try S3Endpoint(
                endpoint: s3.env.endpoint, region: s3.env.region,
                bucket: "no-such-bucket-\(UInt32.random(in: 0...UInt32.max))"),
            credentials: S3Credentials(accessKeyID: s3.env.accessKeyID, secretAccessKey: s3.env.secretAccessKey))
        expectS3Error([.noSuchBucket]) { () throws(S3Error) in try missing.headBucket() }
    }

    @Test func everyByteValueRoundTrips() throws {
        let s3 = try S3Fixture()
        let key = s3.key("bytes.bin")
        let bytes = (0..<4).flatMap { _ in (0...255).map { UInt8($0) } }
        let etag = try s3.client.putObject(key: key, body: .bytes(bytes), contentType: "application/octet-stream")
        #expect(!etag.isEmpty)
        #expect(try s3.client.getObject(key: key) == bytes)

        var streamed: [UInt8] = []
        let info = try s3.client.getObject(key: key) { streamed.append(contentsOf: $0) }
        #expect(streamed == bytes)
        #expect(info.size == Int64(bytes.count))
        #expect(info.etag == etag)
        try s3.client.deleteObject(key: key)
    }

    /// A key with dot segments is sent exactly as it was signed (CURLOPT_PATH_AS_IS): libcurl would otherwise
    /// squash `a/../b` to `b`, so the store would see another path than the one signed (SignatureDoesNotMatch)
    /// or write another key. SeaweedFS refuses such keys outright (InvalidRequest), AWS stores them as
    /// written; either is an answer to the request we signed.
    @Test func dotSegmentsInAKeyAreSentAsSigned() throws {
        let s3 = try S3Fixture()
        let key = s3.key("a/../b/./dots.bin")
        let bytes = testBytes(count: 1000, seed: 3)
        do {
            try s3.client.putObject(key: key, body: .bytes(bytes), contentType: "application/octet-stream")
            #expect(try s3.client.getObject(key: key) == bytes)
            try s3.client.deleteObject(key: key)
        } catch {
            #expect(error.code != .signatureDoesNotMatch && error.status != 403, "the store saw another path than the signed one: \(error)")
        }
        #expect(try s3.client.headObject(key: s3.key("b/dots.bin")) == nil, "stored under the squashed key")
    }

    @Test func sixMiBFileFromDiskRoundTrips() throws {
        let s3 = try S3Fixture()
        let key = s3.key("six.bin")
        let bytes = testBytes(count: 6 << 20, seed: 6)
        let file = try TempFile(bytes)
        defer { file.remove() }
        try s3.client.putObject(
            key: key, body: .file(path: file.path, length: Int64(bytes.count)),
            contentType: "application/octet-stream", payloadSHA256Hex: sha256Hex(bytes))
        var received: [UInt8] = []
        received.reserveCapacity(bytes.count)
        let info = try s3.client.getObject(key: key) { received.append(contentsOf: $0) }
        #expect(info.size == Int64(bytes.count))
        #expect(received.count == bytes.count)
        #expect(received == bytes)
        try s3.client.deleteObject(key: key)
    }

    @Test func contentTypeAndMetadataComeBackInHeadObject() throws {
        let s3 = try S3Fixture()
        let key = s3.key("meta.png")
        try s3.client.putObject(
            key: key, body: .bytes(Array("png?".utf8)), contentType: "image/png",
            metadata: ["sha256": "abc123", "Source-URL": "https://replicate.delivery/x/out-0.png"])
        let info = try #require(try s3.client.headObject(key: key))
        #expect(info.size == 4)
        #expect(info.contentType == "image/png")
        #expect(info.metadata["sha256"] == "abc123")
        #expect(info.metadata["source-url"] == "https://replicate.delivery/x/out-0.png")
        #expect(info.etag?.isEmpty == false)
        #expect(info.lastModified != nil)
        try s3.client.deleteObject(key: key)
    }

    @Test func missingKeyHeadIsNilAndGetIsNoSuchKey() throws {
        let s3 = try S3Fixture()
        #expect(try s3.client.headObject(key: s3.key("never-written")) == nil)
        expectS3Error([.noSuchKey]) { () throws(S3Error) in try s3.client.getObject(key: s3.key("never-written")) }
    }

    @Test func deleteRemovesAndIsIdempotent() throws {
        let s3 = try S3Fixture()
        let key = s3.key("to-delete")
        try s3.client.putObject(key: key, body: .bytes([1, 2, 3]), contentType: nil)
        #expect(try s3.client.headObject(key: key) != nil)
        try s3.client.deleteObject(key: key)
        #expect(try s3.client.headObject(key: key) == nil)
        try s3.client.deleteObject(key: key)
    }

    @Test func wrongSecretIsRefused() throws {
        let s3 = try S3Fixture()
        let key = s3.key("wrong-secret")
        try s3.client.putObject(key: key, body: .bytes([1]), contentType: nil)
        let impostor = s3.client(secret: s3.env.secretAccessKey + "x")
        expectS3Error([.signatureDoesNotMatch, .accessDenied]) { () throws(S3Error) in
            try impostor.putObject(key: s3.key("impostor"), body: .bytes([1]), contentType: nil)
        }
        expectS3Error([.signatureDoesNotMatch, .accessDenied]) { () throws(S3Error) in try impostor.getObject(key: key) }
        do {
            _ = try impostor.getObject(key: key)
        } catch {
            #expect(!error.description.contains(s3.env.secretAccessKey))
            #expect(error.status == 403)
        }
        try s3.client.deleteObject(key: key)
    }

    @Test func presignedURLServesBytesAndTamperingOrExpiryIsRefused() throws {
        let s3 = try S3Fixture()
        let key = s3.key("presigned.bin")
        let bytes = testBytes(count: 1000, seed: 42)
        try s3.client.putObject(key: key, body: .bytes(bytes), contentType: "application/octet-stream")

        let url = s3.client.presignedGetURL(key: key, expires: 300)
        let ok = try S3Fixture.plainGet(url)
        #expect(ok.status == 200)
        #expect(ok.body == bytes)

        // One character of the signature changed.
        let last = try #require(url.last)
        let tampered = String(url.dropLast()) + (last == "0" ? "1" : "0")
        #expect(try S3Fixture.plainGet(tampered).status == 403)

        // Signed an hour ago, valid for one second.
        let expired = s3.client.presignedGetURL(key: key, expires: 1, date: Date().addingTimeInterval(-3600))
        #expect(try S3Fixture.plainGet(expired).status == 403)

        // response-content-disposition is signed and honoured or at least accepted.
        let disposition = s3.client.presignedGetURL(key: key, expires: 300, responseContentDisposition: "attachment; filename=\"a b.bin\"")
        let withDisposition = try S3Fixture.plainGet(disposition)
        #expect(withDisposition.status == 200)
        #expect(withDisposition.body == bytes)
        try s3.client.deleteObject(key: key)
    }

    @Test(arguments: [
        "with space.png", "unicode/ሴ-é-日本.png", "plus+sign.png", "equals=sign.png", "nested/a/b/c.png",
        "mixed dir/a+b=c ~(1).png",
    ])
    func awkwardKeysRoundTrip(_ name: String) throws {
        let s3 = try S3Fixture()
        let key = s3.key(name)
        let bytes = Array("bytes of \(name)".utf8)
        try s3.client.putObject(key: key, body: .bytes(bytes), contentType: "image/png")
        #expect(try s3.client.getObject(key: key) == bytes)
        #expect(try s3.client.headObject(key: key)?.size == Int64(bytes.count))
        let presigned = try S3Fixture.plainGet(s3.client.presignedGetURL(key: key, expires: 60))
        #expect(presigned.status == 200)
        #expect(presigned.body == bytes)
        try s3.client.deleteObject(key: key)
        #expect(try s3.client.headObject(key: key) == nil)
    }

    @Test func multipartUploadOfTwoFiveMiBPartsAndRemainder() throws {
        let s3 = try S3Fixture()
        let key = s3.key("multipart.bin")
        let partSize = 5 << 20
        let bytes = testBytes(count: 2 * partSize + 123_457, seed: 7)
        let file = try TempFile(bytes)
        defer { file.remove() }

        let uploadId = try s3.client.createMultipartUpload(key: key, contentType: "video/mp4", metadata: ["sha256": sha256Hex(bytes)])
        #expect(!uploadId.isEmpty)
        var parts: [(Int, String)] = []
        var offset = 0
        var number = 1
        while offset < bytes.count {
            let length = min(partSize, bytes.count - offset)
            let etag = try s3.client.uploadPart(
                key: key, uploadId: uploadId, partNumber: number,
                body: .file(path: file.path, offset: Int64(offset), length: Int64(length)),
                payloadSHA256Hex: sha256Hex(bytes[offset..<offset + length]))
            parts.append((number, etag))
            offset += length
            number += 1
        }
        #expect(parts.count == 3)
        let etag = try s3.client.completeMultipartUpload(key: key, uploadId: uploadId, parts: parts.reversed())
        #expect(!etag.isEmpty)

        let info = try #require(try s3.client.headObject(key: key))
        #expect(info.size == Int64(bytes.count))
        #expect(info.contentType == "video/mp4")
        #expect(info.metadata["sha256"] == sha256Hex(bytes))
        var received: [UInt8] = []
        try s3.client.getObject(key: key) { received.append(contentsOf: $0) }
        #expect(received == bytes)
        try s3.client.deleteObject(key: key)
    }

    @Test func multipartPartUnderFiveMiBIsRefusedAndAbortCleansUp() throws {
        let s3 = try S3Fixture()
        let key = s3.key("small-parts.bin")
        let uploadId = try s3.client.createMultipartUpload(key: key, contentType: nil)
        let small = testBytes(count: 1 << 20, seed: 3)
        let first = try s3.client.uploadPart(key: key, uploadId: uploadId, partNumber: 1, body: .bytes(small))
        let second = try s3.client.uploadPart(key: key, uploadId: uploadId, partNumber: 2, body: .bytes(small))
        expectS3Error([.entityTooSmall]) { () throws(S3Error) in
            try s3.client.completeMultipartUpload(key: key, uploadId: uploadId, parts: [(1, first), (2, second)])
        }
        try s3.client.abortMultipartUpload(key: key, uploadId: uploadId)
        expectS3Error([.noSuchUpload]) { () throws(S3Error) in
            try s3.client.uploadPart(key: key, uploadId: uploadId, partNumber: 3, body: .bytes(small))
        }
        #expect(try s3.client.headObject(key: key) == nil)
    }

    @Test func ifNoneMatchRefusesToReplaceAnExistingObject() throws {
        let s3 = try S3Fixture()
        let key = s3.key("once")
        try s3.client.putObject(key: key, body: .bytes([1]), contentType: nil, ifNoneMatch: true)
        expectS3Error([.preconditionFailed]) { () throws(S3Error) in
            try s3.client.putObject(key: key, body: .bytes([2]), contentType: nil, ifNoneMatch: true)
        }
        #expect(try s3.client.getObject(key: key) == [1])
        try s3.client.deleteObject(key: key)
    }

    /// The archiver skips its HEAD when the store has checked the body's MD5 and named the object by it;
    /// that rests on this: a wrong `Content-MD5` is refused (`BadDigest`) and nothing is stored, the right
    /// one is answered with its hex as the ETag. (SeaweedFS does not check `x-amz-content-sha256`.)
    @Test func contentMD5IsCheckedByTheStoreAndComesBackAsTheETag() throws {
        let s3 = try S3Fixture()
        let key = s3.key("md5.bin")
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let md5 = Array(Insecure.MD5.hash(data: bytes))
        var wrong = md5
        wrong[0] ^= 1
        expectS3Error([.contentSHA256Mismatch]) { () throws(S3Error) in
            try s3.client.putObject(key: key, body: .bytes(bytes), contentType: nil, contentMD5: wrong)
        }
        #expect(try s3.client.headObject(key: key) == nil)
        let etag = try s3.client.putObject(key: key, body: .bytes(bytes), contentType: nil, contentMD5: md5)
        #expect(etag.trimmingCharacters(in: CharacterSet(charactersIn: "\"")).lowercased() == md5.map { String(format: "%02x", $0) }.joined())
        #expect(try s3.client.getObject(key: key) == bytes)
        try s3.client.deleteObject(key: key)
    }

    @Test func throwingSinkStopsTheDownload() throws {
        struct Full: Error {}
        let s3 = try S3Fixture()
        let key = s3.key("sink.bin")
        try s3.client.putObject(key: key, body: .bytes(testBytes(count: 256 << 10, seed: 9)), contentType: nil)
        expectS3Error([.sinkFailed]) { () throws(S3Error) in
            try s3.client.getObject(key: key) { _ in throw Full() }
        }
        try s3.client.deleteObject(key: key)
    }

    @Test func invalidArgumentsAreRefusedBeforeSending() throws {
        let s3 = try S3Fixture()
        expectS3Error([.invalidArgument]) { () throws(S3Error) in try s3.client.getObject(key: "") }
        expectS3Error([.invalidArgument]) { () throws(S3Error) in
            try s3.client.putObject(key: s3.key("x"), body: .bytes([]), contentType: "text/plain\r\nX-Evil: 1")
        }
        expectS3Error([.invalidArgument]) { () throws(S3Error) in
            try s3.client.putObject(key: s3.key("x"), body: .bytes([]), contentType: nil, payloadSHA256Hex: "nothex")
        }
        expectS3Error([.invalidArgument]) { () throws(S3Error) in
            try s3.client.putObject(key: s3.key("x"), body: .bytes([]), contentType: nil, metadata: ["bad name": "v"])
        }
    }
}

@Suite("S3 client shared between threads")
struct S3ClientConcurrencyTests {
    /// One client, many simultaneous calls: each borrows its own CurlSession.
    @Test func concurrentCallsOnOneClient() async throws {
        let s3 = try S3Fixture()
        let client = s3.client
        let keys = (0..<8).map { s3.key("concurrent-\($0)") }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for (i, key) in keys.enumerated() {
                group.addTask {
                    let bytes = testBytes(count: 300_000 + i, seed: UInt64(i + 100))
                    try client.putObject(key: key, body: .bytes(bytes), contentType: nil)
                    let back = try client.getObject(key: key)
                    try client.deleteObject(key: key)
                    return back == bytes
                }
            }
            var results: [Bool] = []
            for try await ok in group { results.append(ok) }
            #expect(results == Array(repeating: true, count: keys.count))
        }
    }
}
