import Curl
import Foundation
import TestSupport
import Testing

@Suite("/metrics", .serialized)
struct MetricsTests {
    func scrape(_ daemon: DaemonProcess) throws -> PrometheusText {
        let response = try #require(daemon.get("/metrics"))
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain") == true)
        return try PrometheusText(String(decoding: response.body, as: UTF8.self))
    }

    @Test("parses as Prometheus text, and its counters move with the traffic sent")
    func countersFollowTraffic() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_WORKERS_DRAIN_TIMEOUT": "1"])
        // The queue gauges appear with the first count that succeeds, and a scrape counts again at most once
        // a second; on a loaded machine the first scrape has come before them (CI, once): wait for them
        // rather than race them. Their value is still checked below.
        var before = try scrape(daemon)
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(200), "the queue gauges") {
            before = try scrape(daemon)
            return before.value("afterimage_assets", ["state": "stored"]) != nil
        }
        let accepted = ["provider": "replicate", "outcome": "accepted"]
        #expect((before.value("afterimage_webhooks_total", accepted) ?? 0) == 0)
        #expect(before.value("afterimage_assets", ["state": "stored"]) == 0)
        #expect(before.value("afterimage_db_pool_waiting") == 0)

        let sizes = [5000, 7000]
        let urls = sizes.enumerated().map {
            harness.fake.url("metrics-\($0.offset)-\(UUID().uuidString.prefix(6)).png", "size=\($0.element)&type=image/png")
        }
        let id = "metrics\(UUID().uuidString.prefix(8).lowercased())"
        let body = harness.prediction(id: id, output: urls)
        let webhookID = "msg_\(UUID().uuidString)"
        #expect(try harness.post(body, to: daemon, webhookID: webhookID).status == 200)
        #expect(try harness.post(body, to: daemon, webhookID: webhookID).status == 200)  // a repeat
        #expect(try harness.post(body, to: daemon, tamper: true).status == 401)
        try harness.waitForAssets("stored", count: 2)

        // The latency sample is recorded just after the row, and the queue gauges are re-read at most
        // once a second: wait for both rather than race them.
        var after = try scrape(daemon)
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(100), "webhook-to-stored samples and the stored gauge") {
            after = try scrape(daemon)
            return after.value("afterimage_webhook_to_stored_seconds_count", ["provider": "replicate"]) == 2
                && after.value("afterimage_assets", ["state": "stored"]) == 2
        }
        #expect(after.value("afterimage_webhooks_total", accepted) == 2)
        #expect(after.value("afterimage_webhooks_total", ["provider": "replicate", "outcome": "unauthorized"]) == 1)
        #expect(after.value("afterimage_webhook_duplicates_total", ["provider": "replicate"]) == 1)
        #expect(after.value("afterimage_webhook_ack_seconds_count", ["provider": "replicate"]) == 3)
        let total = Double(sizes.reduce(0, +))
        #expect(after.value("afterimage_transfer_bytes_total", ["direction": "download", "provider": "replicate"]) == total)
        #expect(after.value("afterimage_transfer_bytes_total", ["direction": "upload", "provider": "replicate"]) == total)
        #expect(after.value("afterimage_transfer_seconds_count", ["direction": "download", "provider": "replicate"]) == 2)
        #expect(after.value("afterimage_assets", ["state": "stored"]) == 2)
        #expect(after.value("afterimage_assets", ["state": "pending"]) == 0)
        #expect(after.types["afterimage_webhook_ack_seconds"] == "histogram")
        #expect(after.types["afterimage_webhooks_total"] == "counter")
        #expect(after.types["afterimage_assets"] == "gauge")
        #expect((after.value("afterimage_db_pool_connections", ["state": "idle"]) ?? 0) >= 1)
        #expect(after.value("afterimage_deadline_misses_total", ["provider": "replicate"]) == nil)

        // A pending asset with a deadline shows up as the oldest pending deadline.
        let stalled = harness.fake.url("metrics-stall-\(UUID().uuidString.prefix(6)).bin", "size=100&delay_ms=20000")
        let completed = Date()
        #expect(try harness.post(harness.prediction(id: id + "b", output: [stalled], completedAt: completed), to: daemon).status == 200)
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(100), "an oldest deadline") {
            (try scrape(daemon).value("afterimage_oldest_pending_deadline_timestamp_seconds") ?? 0) > 0
        }
        let deadline = try #require(try scrape(daemon).value("afterimage_oldest_pending_deadline_timestamp_seconds"))
        #expect(abs(deadline - (completed.timeIntervalSince1970 + 3600)) < 5, "deadline \(deadline)")
        #expect(try daemon.stop() == 0)
    }
}
