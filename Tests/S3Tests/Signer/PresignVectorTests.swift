import Foundation
import S3
import Testing

/// The AWS S3 documentation's presigned GET example (Vectors/s3-presign-vector.json).
@Suite("S3 presign vector")
struct PresignVectorTests {
    /// The vectors spell their keys as JSON does (`webhook_id`); the properties are Swift's camel case.
    static var snakeCaseDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    struct Vector: Decodable {
        var method: String
        var url: String
        var accessKeyId: String
        var secretAccessKey: String
        var region: String
        var service: String
        var amzDate: String
        var expires: Int
        var expectedCanonicalRequest: String
        var expectedCanonicalRequestSha256: String
        var expectedSignature: String
    }

    @Test func documentationExampleMatches() throws {
        let data = Data(try VectorFiles.text("s3-presign-vector.json").utf8)
        let v = try Self.snakeCaseDecoder.decode(Vector.self, from: data)
        let signer = SigV4Signer(
            credentials: S3Credentials(accessKeyID: v.accessKeyId, secretAccessKey: v.secretAccessKey),
            region: v.region, service: v.service)
        let date = try #require(SigV4Signer.parseAMZDate(v.amzDate))
        let p = signer.presignDetails(method: v.method, url: v.url, expires: v.expires, date: date)

        #expect(p.canonicalRequest == v.expectedCanonicalRequest)
        #expect(sha256Hex(p.canonicalRequest.utf8) == v.expectedCanonicalRequestSha256)
        #expect(p.signature == v.expectedSignature)
        #expect(
            p.url == "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                + "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                + "&X-Amz-Signature=\(v.expectedSignature)")
        #expect(signer.presign(method: v.method, url: v.url, expires: v.expires, date: date) == p.url)
    }

    @Test func expiresIsClampedToS3Range() throws {
        let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AK", secretAccessKey: "SK"), region: "us-east-1")
        let date = Date(timeIntervalSince1970: 0)
        #expect(signer.presign(method: "GET", url: "http://h/b/k", expires: 0, date: date).contains("X-Amz-Expires=1&"))
        #expect(signer.presign(method: "GET", url: "http://h/b/k", expires: 10_000_000, date: date).contains("X-Amz-Expires=604800&"))
    }

    @Test func sessionTokenAndExtraQueryAreSignedAndEncoded() throws {
        let signer = SigV4Signer(
            credentials: S3Credentials(accessKeyID: "AK", secretAccessKey: "SK", sessionToken: "to/ken+="),
            region: "us-east-1")
        let p = signer.presignDetails(
            method: "GET", url: "http://127.0.0.1:8333/bucket/a b/ሴ.png", expires: 60, date: Date(timeIntervalSince1970: 0),
            extraQuery: [("response-content-disposition", "attachment; filename=\"a b.png\"")])
        #expect(p.url.hasPrefix("http://127.0.0.1:8333/bucket/a%20b/%E1%88%B4.png?X-Amz-Algorithm="))
        #expect(p.canonicalRequest.contains("X-Amz-Security-Token=to%2Fken%2B%3D"))
        #expect(
            p.canonicalRequest.contains(
                "&response-content-disposition=attachment%3B%20filename%3D%22a%20b.png%22\nhost:127.0.0.1:8333\n"))
        #expect(p.url.hasSuffix("&X-Amz-Signature=\(p.signature)"))
    }
}
