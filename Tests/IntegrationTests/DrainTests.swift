import Curl
import Foundation
import S3
import TestSupport
import Testing

/// SIGTERM while transfers run: the daemon stops accepting, gives transfers the drain timeout, then
/// releases their leases at once (not after they expire) and exits 0; the next instance finishes
/// every asset, none lost, none stored twice, no file downloaded in full twice.
@Suite("SIGTERM drain", .serialized)
struct DrainTests {
    struct Stats: Decodable {
        let active: [String: Int]
        let started: [String: Int]
        let completed: [String: Int]
    }

    func stats(_ fake: FakeProvider) throws -> Stats {
        var options = CurlOptionsForTests.plain
        options.totalTimeout = .seconds(5)
        let response = try CurlSession().perform(CurlRequest(url: "http://127.0.0.1:\(fake.port)/_stats"), options: options)
        return try JSONDecoder().decode(Stats.self, from: Data(response.body))
    }

    @Test("SIGTERM mid-transfer: exit 0, leases released, a second instance stores every asset exactly once")
    func drainThenHandOver() throws {
        let harness = try ArchiveHarness()
        // Long leases: if the second instance finishes quickly, it is because the first released them.
        let slow = [
            "AFTERIMAGE_WORKERS_COUNT": "3", "AFTERIMAGE_WORKERS_DRAIN_TIMEOUT": "1",
            "AFTERIMAGE_WORKERS_LEASE_SECONDS": "120",
        ]
        let first = try harness.startDaemon(extra: slow)
        // 384 KiB at 64 KiB/s: six seconds each, far longer than the drain timeout.
        let names = (0..<5).map { "drain-\($0)-\(UUID().uuidString.prefix(6)).bin" }
        let urls = names.map { harness.fake.url($0, "size=393216&rate=65536") }
        let predictionID = "drain\(UUID().uuidString.prefix(8).lowercased())"
        let response = try harness.post(harness.prediction(id: predictionID, output: urls), to: first)
        #expect(response.status == 200)

        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(50), "three transfers running") {
            try stats(harness.fake).active.values.reduce(0, +) >= 3
        }
        let stopStarted = ContinuousClock.now
        let status = try first.stop(timeout: .seconds(30))
        let stopTook = ContinuousClock.now - stopStarted
        #expect(status == 0)
        #expect(stopTook < .seconds(15), "drain took \(stopTook) with workers.drain_timeout = 1 s")
        #expect(first.log.contains("drain timeout reached"))

        // Released, not left to expire: nothing is in flight, nothing is lost.
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE state = 'in_flight'", as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE lease_expires_at IS NOT NULL", as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM assets", as: Int.self) == names.count)

        // The second instance (same host, same spool) takes over at once and finishes everything,
        // well within the 120 s lease the first instance held.
        let second = try harness.startDaemon(extra: ["AFTERIMAGE_WORKERS_LEASE_SECONDS": "120"])
        try harness.waitForAssets("stored", count: names.count, timeout: .seconds(60))
        #expect(try second.stop() == 0)

        let stored = try harness.storedAssets(predictionID: predictionID)
        #expect(stored.count == names.count)
        #expect(Set(stored.map(\.key)).count == names.count, "two assets share a key")
        let storage = try harness.storage()
        // The fake counts a file as completed after its last paced write: wait until it is idle.
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(50), "the fake provider to finish its responses") {
            try stats(harness.fake).active.values.allSatisfy { $0 == 0 }
        }
        let final = try stats(harness.fake)
        for (index, name) in names.enumerated() {
            let expected = FakeProvider.bytes(name, size: 393216)
            let asset = try #require(stored.first { $0.sourceURL == urls[index] })
            #expect(asset.sha256 == FakeProvider.sha256Hex(expected))
            let object = try #require(try storage.headObject(key: asset.key))
            #expect(object.size == Int64(expected.count))
            #expect(final.completed["/files/\(name)"] == 1, "\(name) was downloaded in full \(final.completed["/files/\(name)"] ?? 0) times")
        }
        // The interrupted downloads really were interrupted, then started again.
        #expect(final.started.values.reduce(0, +) >= names.count + 3)
    }
}

enum CurlOptionsForTests {
    static var plain: CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        return options
    }
}
