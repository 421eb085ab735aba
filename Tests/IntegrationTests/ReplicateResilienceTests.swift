import Foundation
import Glibc
import PQ
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// Crashes, outages and concurrency: nothing acknowledged is lost, nothing is downloaded twice.
@Suite("Replicate: crashes, outages, several daemons", .serialized)
struct ReplicateResilienceTests {
    func expectObject(_ harness: ArchiveHarness, predictionID: String, name: String, size: Int) throws {
        let stored = try harness.storedAssets(predictionID: predictionID)
        #expect(stored.count == 1)
        guard let asset = stored.first else { return }
        let expected = FakeProvider.bytes(name, size: size)
        let storage = try harness.storage()
        var object = [UInt8]()
        _ = try storage.getObject(key: asset.key) { object.append(contentsOf: $0) }
        #expect(object.count == expected.count)
        #expect(object == expected, "stored bytes differ from the source")
        #expect(asset.sha256 == FakeProvider.sha256Hex(expected))
    }

    /// SIGKILL while a download runs: the lease expires, a new daemon takes the job and stores it once.
    @Test func killedMidDownloadIsFinishedByTheNextDaemon() throws {
        let harness = try ArchiveHarness()
        var daemon = try harness.startDaemon()
        let id = "kill\(UUID().uuidString.prefix(6).lowercased())"
        let name = "\(id).png"
        let size = 3_000_000
        let body = harness.prediction(id: id, output: [harness.fake.url(name, "size=\(size)&type=image/png&rate=1000000")])
        #expect(try harness.post(body, to: daemon).status == 200)
        try waitUntil(timeout: .seconds(30), "download under way") { (try harness.fake.stats().active["/files/\(name)"] ?? 0) > 0 }
        kill(daemon.process.processIdentifier, SIGKILL)
        daemon.process.waitUntilExit()
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [id], as: String.self) == "in_flight")

        daemon = try harness.startDaemon()
        try harness.waitForAssets("stored", count: 1)
        try expectObject(harness, predictionID: id, name: name, size: size)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [id], as: Int.self) == 1)
        // The killed daemon's partial spool file is cleaned up (its writer process is gone).
        try waitUntil(timeout: .seconds(10), "spool empty") {
            (try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory)).isEmpty
        }
        #expect(try daemon.stop() == 0)
    }

    /// The bucket is down after the download: the spool keeps the bytes and the next try uploads them
    /// without downloading again.
    @Test func storageOutageUploadsFromTheSpoolWithoutASecondDownload() throws {
        let seaweed = try PrivateSeaweed()
        defer { seaweed.destroy() }
        let s3 = TestEnvironment.S3(
            endpoint: seaweed.endpoint, region: "us-east-1", bucket: seaweed.bucket,
            accessKeyID: seaweed.accessKeyID, secretAccessKey: seaweed.secretAccessKey)
        let harness = try ArchiveHarness(s3: s3)
        let daemon = try harness.startDaemon()
        try seaweed.stop()

        let id = "outage\(UUID().uuidString.prefix(6).lowercased())"
        let names = ["\(id)-0.png", "\(id)-1.png"]
        let body = harness.prediction(id: id, output: names.map { harness.fake.url($0, "size=200000&type=image/png") })
        #expect(try harness.post(body, to: daemon).status == 200)
        try waitUntil(timeout: .seconds(60), "both assets spooled with a failed upload") {
            try harness.scalar(
                """
                SELECT count(*) FROM assets WHERE prediction_id = $1 AND spool_path IS NOT NULL AND last_error IS NOT NULL
                """, [id], as: Int.self) == 2
        }
        try seaweed.start()
        try harness.waitForAssets("stored", count: 2, timeout: .seconds(90))
        for name in names { #expect(try harness.fake.count(name) == 1, "\(name) downloaded again") }
        let stored = try harness.storedAssets(predictionID: id)
        #expect(stored.count == 2)
        for asset in stored {
            let name = URL(string: asset.sourceURL)!.lastPathComponent
            #expect(try harness.storage().getObject(key: asset.key) == FakeProvider.bytes(name, size: 200_000))
        }
        #expect(try daemon.stop() == 0)
    }

    /// Two daemons on one database and one bucket share 200 assets: every file downloaded exactly once.
    @Test func twoDaemonsArchive200AssetsWithoutDoubleDownloads() throws {
        let harness = try ArchiveHarness()
        let spoolB = harness.spoolDirectory + "-b"
        defer { try? FileManager.default.removeItem(atPath: spoolB) }
        let daemons = [try harness.startDaemon(), try harness.startDaemon(spool: spoolB)]
        var names: [String] = []
        for p in 0..<40 {
            let id = "pair\(p)x\(UUID().uuidString.prefix(4).lowercased())"
            let files = (0..<5).map { "\(id)-\($0).webp" }
            names += files
            let body = harness.prediction(id: id, output: files.map { harness.fake.url($0, "size=20000&type=image/webp") })
            #expect(try harness.post(body, to: daemons[p % 2]).status == 200)
        }
        try harness.waitForAssets("stored", count: 200, timeout: .seconds(180))
        let counts = try harness.fake.stats().counts
        for name in names { #expect(counts["/files/\(name)"] == 1, "\(name) downloaded \(counts["/files/\(name)"] ?? 0) times") }
        let claimedBy = try harness.connection().query("SELECT count(DISTINCT claimed_by) FROM assets").first?.decode(0, as: Int.self)
        #expect(claimedBy != nil)
        for daemon in daemons { #expect(try daemon.stop() == 0) }
    }

    /// Above `storage.multipart_threshold` the upload goes in parts; the object is whole and exact.
    @Test func largeFilesGoUpInParts() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_STORAGE_MULTIPART_THRESHOLD": String(6 << 20), "AFTERIMAGE_STORAGE_PART_SIZE": String(5 << 20),
        ])
        let id = "multi\(UUID().uuidString.prefix(6).lowercased())"
        let name = "\(id).mp4"
        let size = 13 << 20
        let body = harness.prediction(id: id, output: harness.fake.url(name, "size=\(size)&type=video/mp4"))
        #expect(try harness.post(body, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 1, timeout: .seconds(120))
        try expectObject(harness, predictionID: id, name: name, size: size)
        let key = try harness.scalar("SELECT storage_key FROM assets WHERE prediction_id = $1", [id], as: String.self)
        #expect(key.hasSuffix("/0.mp4"))
        // A multipart ETag carries the part count: "<md5>-3".
        let etag = try harness.scalar("SELECT etag FROM assets WHERE prediction_id = $1", [id], as: String?.self) ?? ""
        #expect(etag.contains("-3"), "\(etag)")
        #expect(try daemon.stop() == 0)
    }

    /// A source that answers 404 after its deadline ends `expired`; one over fetch.max_bytes ends `failed`.
    @Test func permanentOutcomesCarryAReason() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_FETCH_MAX_BYTES": "100000"])
        let gone = "gone\(UUID().uuidString.prefix(6).lowercased())"
        let past = Date().addingTimeInterval(-7200)  // completed two hours ago: the deadline has passed
        #expect(
            try harness.post(harness.prediction(id: gone, output: [harness.fake.url("\(gone).png", "status=404")], completedAt: past), to: daemon)
                .status == 200)
        let huge = "huge\(UUID().uuidString.prefix(6).lowercased())"
        #expect(
            try harness.post(harness.prediction(id: huge, output: [harness.fake.url("\(huge).png", "size=500000&chunked=1")]), to: daemon).status
                == 200)
        try waitUntil(timeout: .seconds(60), "both settled") {
            try harness.scalar("SELECT count(*) FROM assets WHERE state IN ('expired', 'failed')", as: Int.self) == 2
        }
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [gone], as: String.self) == "expired")
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [huge], as: String.self) == "failed")
        #expect(try harness.scalar("SELECT failure_reason FROM assets WHERE prediction_id = $1", [huge], as: String.self).contains("max_bytes"))
        #expect(try daemon.stop() == 0)
    }
}
