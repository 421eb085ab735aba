import Curl
import Foundation
import TestSupport
import Testing

/// Issue 13.6: SIGTERM ends within the stop budget with exit 0 even while uploads hang: single and
/// multipart uploads observe the abort, the multipart upload is aborted at the store, and the leases are
/// released for another instance.
@Suite("Bounded stop", .serialized)
struct StopDeadlineTests {
    struct StallStats: Decodable {
        let puts: Int
        let parts: Int
        let uploads: [String]
        let aborted: [String]
    }

    func stats(_ fake: PythonFake) throws -> StallStats {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(5)
        let response = try CurlSession().perform(CurlRequest(url: "http://127.0.0.1:\(fake.port)/_stats"), options: options)
        return try JSONDecoder().decode(StallStats.self, from: Data(response.body))
    }

    @Test("uploads that never finish: SIGTERM exits 0 within seconds, the multipart upload is aborted, leases released")
    func stalledUploadsDoNotHoldTheStop() throws {
        let store = try PythonFake(script: "fake_s3_stall.py")
        let harness = try ArchiveHarness(
            s3: TestEnvironment.S3(
                endpoint: "http://127.0.0.1:\(store.port)", region: "us-east-1", bucket: "stall",
                accessKeyID: "stall-key", secretAccessKey: "stall-secret"))
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_WORKERS_COUNT": "2", "AFTERIMAGE_WORKERS_DRAIN_TIMEOUT": "1",
            "AFTERIMAGE_WORKERS_LEASE_SECONDS": "120",
            "AFTERIMAGE_STORAGE_MULTIPART_THRESHOLD": String(5 << 20), "AFTERIMAGE_STORAGE_PART_SIZE": String(5 << 20),
        ])
        let id = "stall\(UUID().uuidString.prefix(6).lowercased())"
        let outputs = [harness.fake.url("\(id)-big.bin", "size=\(6 << 20)"), harness.fake.url("\(id)-small.bin", "size=100000")]
        #expect(try harness.post(harness.prediction(id: id, output: outputs), to: daemon).status == 200)
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(100), "a part and a single PUT hanging at the store") {
            let s = try stats(store)
            return s.parts >= 1 && s.puts >= 1
        }

        let began = ContinuousClock.now
        let status = try daemon.stop(timeout: .seconds(40))
        let took = ContinuousClock.now - began
        #expect(status == 0)
        // Without the abort the uploads would hold the workers until libcurl's 60 s low-speed limit.
        #expect(took < .seconds(20), "stop took \(took)")
        #expect(daemon.log.contains("drain timeout reached"))

        let final = try stats(store)
        #expect(final.uploads.count == 1)
        #expect(final.aborted == final.uploads, "the multipart upload was not aborted: \(final)")
        // Released at once, not left to expire (the lease is 120 s).
        #expect(
            try harness.scalar(
                "SELECT count(*) FROM assets WHERE prediction_id = $1 AND state = 'pending' AND lease_expires_at IS NULL",
                [id], as: Int.self) == 2)
    }
}
