import Crypto
import Foundation
import Logging
import PQ
import Primitives
import S3
import Testing

@testable import Afterimage

/// Where a download's bytes go: memory up to the limit, the spool from the first byte past it.
@Suite("Archive: download sink")
struct DownloadSinkTests {
    let spool: Spool

    init() throws {
        spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-sink-\(UUID().uuidString)")
    }

    func bytes(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }

    func sink(limit: Int, assetID: Int64 = 1) -> DownloadSink {
        DownloadSink(memoryLimit: limit) { [spool] in try spool.writer(assetID: assetID, claim: UUID()) }
    }

    func write(_ data: [UInt8], to sink: DownloadSink, pieces: Int) throws {
        let step = max(1, data.count / pieces)
        var start = 0
        while start < data.count {
            let end = min(data.count, start + step)
            try data[start..<end].withUnsafeBytes { try sink.write($0) }
            start = end
        }
    }

    func spoolFiles() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: spool.directory) }

    @Test func bytesWithinTheLimitStayInMemoryWithTheirHashes() throws {
        let data = bytes(200_000)
        let sink = sink(limit: 1 << 20)
        try write(data, to: sink, pieces: 13)
        guard case .held(let held) = try sink.finish(contentType: "image/png") else {
            Issue.record("a download within the limit went to the spool")
            return
        }
        guard case .memory(let bytes) = held.location else {
            Issue.record("held bytes are not in memory")
            return
        }
        #expect(bytes == data)
        #expect(held.sha256 == Hex.encode(SHA256.hash(data: data)))
        #expect(held.md5 == Array(Insecure.MD5.hash(data: data)))
        #expect(held.contentType == "image/png")
        #expect(try spoolFiles().isEmpty, "a held download wrote to the spool")
    }

    @Test func theFirstBytePastTheLimitMovesEverythingToTheSpool() throws {
        let limit = 100_000
        let data = bytes(limit + 1)
        let sink = sink(limit: limit, assetID: 7)
        try write(data, to: sink, pieces: 7)
        guard case .spooled(let path, let sha256, let size) = try sink.finish(contentType: nil) else {
            Issue.record("a download past the limit was held in memory")
            return
        }
        #expect(size == Int64(data.count))
        #expect(sha256 == Hex.encode(SHA256.hash(data: data)))
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == data)
        #expect(path == spool.finalPath(assetID: 7))
    }

    @Test func aLimitOfZeroSpoolsFromTheFirstByte() throws {
        let sink = sink(limit: 0)
        try write([1], to: sink, pieces: 1)
        #expect(try spoolFiles().count == 1, "the part file exists once a byte has arrived")
        guard case .spooled = try sink.finish(contentType: nil) else {
            Issue.record("a zero limit held the download")
            return
        }
    }

    @Test func discardRemovesThePartFile() throws {
        let sink = sink(limit: 10)
        try write(bytes(50), to: sink, pieces: 5)
        #expect(try spoolFiles().count == 1)
        sink.discard()
        #expect(try spoolFiles().isEmpty)
    }

    @Test func aDownloadIsHeldOnlyWithTenMinutesOrFourLeasesBeforeItsDeadline() throws {
        let now = Date()
        func limit(lease: Int, threshold: Int64 = 64 << 20, deadlineIn seconds: TimeInterval?) throws -> Int {
            let storage = S3Client(
                endpoint: try S3Endpoint(endpoint: "http://127.0.0.1:9", region: "us-east-1", bucket: "b", pathStyle: true),
                credentials: S3Credentials(accessKeyID: "k", secretAccessKey: "s", sessionToken: nil))
            // Nothing here connects: the pool opens connections on first use.
            let archiver = Archiver(
                queue: ArchiveQueue(leaseSeconds: lease, instanceName: "test"), pool: Pool(url: "postgresql://127.0.0.1:9/none", size: 1),
                storage: storage, spool: spool, layout: StorageLayout(prefix: ""),
                policy: { FetchPolicy(allowedHosts: [], allowedSchemes: ["https"], allowPrivateNetworks: false, maxBytes: 1 << 30) },
                sourceCredential: { _ in nil }, multipartThreshold: threshold, logger: Logger(label: "test"))
            let job = ArchiveJob(
                assetID: 1, provider: .replicate, predictionID: "p", outputIndex: 0, sourceURL: "https://example.com/a.png",
                deadline: seconds.map { now.addingTimeInterval($0) }, attempts: 1, claimToken: UUID(), spoolPath: nil,
                spoolSHA256: nil, spoolSize: nil, contentType: nil)
            return archiver.heldDownloadLimit(for: job, now: now)
        }
        #expect(try limit(lease: 30, deadlineIn: 3600) == 1 << 20)
        #expect(try limit(lease: 30, deadlineIn: nil) == 1 << 20)
        #expect(try limit(lease: 30, deadlineIn: 600) == 1 << 20)
        #expect(try limit(lease: 30, deadlineIn: 599) == 0)
        #expect(try limit(lease: 300, deadlineIn: 1199) == 0)
        #expect(try limit(lease: 300, deadlineIn: 1200) == 1 << 20)
        #expect(try limit(lease: 30, threshold: 512 << 10, deadlineIn: 3600) == 512 << 10)
    }
}
