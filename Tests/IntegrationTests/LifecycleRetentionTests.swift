import Foundation
import PQ
import S3
import TestSupport
import Testing

/// Issue 19, retention: raw delivery bodies pruned once settled and old enough, objects deleted after
/// `retention.objects` with tombstones kept; both through the real daemon's retention loop.
@Suite("Lifecycle: retention", .serialized)
struct LifecycleRetentionTests {
    func scrape(_ daemon: DaemonProcess) throws -> PrometheusText {
        try PrometheusText(String(decoding: try #require(daemon.get("/metrics")).body, as: UTF8.self))
    }

    @Test("a body is replaced by its SHA-256 and size once its assets are settled and it is old enough; not before")
    func deliveryBodies() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_RETENTION_DELIVERY_BODIES": "1", "AFTERIMAGE_RETENTION_INTERVAL": "1"])
        let tag = UUID().uuidString.prefix(8).lowercased()
        let settled = "bodya\(tag)"
        let waiting = "bodyb\(tag)"
        let settledBody = harness.prediction(id: settled, output: [harness.fake.url("\(settled).png", "size=3000&type=image/png")])
        // Answers only after 8 s: its body must stay while the asset is in flight, though older than a second.
        let waitingBody = harness.prediction(id: waiting, output: [harness.fake.url("\(waiting).png", "size=3000&type=image/png&delay_ms=8000")])
        #expect(try harness.post(settledBody, to: daemon).status == 200)
        #expect(try harness.post(waitingBody, to: daemon).status == 200)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the settled prediction's body pruned") {
            try harness.scalar("SELECT body_pruned_at IS NOT NULL FROM deliveries WHERE prediction_id = $1", [settled], as: Bool.self)
        }
        #expect(
            try harness.scalar("SELECT body_sha256 FROM deliveries WHERE prediction_id = $1", [settled], as: String.self)
                == FakeProvider.sha256Hex(settledBody))
        #expect(
            try harness.scalar("SELECT body_size FROM deliveries WHERE prediction_id = $1", [settled], as: Int64.self)
                == Int64(settledBody.count))
        #expect(try harness.scalar("SELECT octet_length(body) FROM deliveries WHERE prediction_id = $1", [settled], as: Int.self) == 0)
        // Still in flight: kept whole, though older than retention.delivery_bodies.
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [waiting], as: String.self) != "stored")
        #expect(
            try harness.scalar("SELECT octet_length(body) FROM deliveries WHERE prediction_id = $1", [waiting], as: Int.self)
                == waitingBody.count)
        // Once stored, it goes too (the walk comes back for bodies it passed over).
        try harness.waitForAssets("stored", count: 2)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(200), "the second body pruned") {
            try harness.scalar("SELECT body_pruned_at IS NOT NULL FROM deliveries WHERE prediction_id = $1", [waiting], as: Bool.self)
        }
        // The prediction itself (input, output) and the stored objects are untouched.
        #expect(try harness.scalar("SELECT input IS NOT NULL AND deleted_at IS NULL FROM predictions WHERE id = $1", [settled], as: Bool.self))
        #expect(try harness.storage().allKeys(prefix: "\(harness.prefix)replicate/\(settled)/").count == 1)
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(200), "the pruning counted in /metrics") {
            let metrics = try scrape(daemon)
            return metrics.value("afterimage_delivery_bodies_pruned_total") == 2
                && metrics.value("afterimage_delivery_body_pruned_bytes_total") == Double(settledBody.count + waitingBody.count)
        }
        #expect(try scrape(daemon).types["afterimage_delivery_body_bytes"] == "gauge")
        #expect(try daemon.stop() == 0)
    }

    @Test("objects older than retention.objects are deleted, tombstones kept; the metric counts them")
    func objects() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_RETENTION_OBJECTS": "3", "AFTERIMAGE_RETENTION_INTERVAL": "1",
            "AFTERIMAGE_API_TOKENS": "tok_objects",
        ])
        let id = "objret\(UUID().uuidString.prefix(8).lowercased())"
        let body = harness.prediction(
            id: id,
            output: [
                harness.fake.url("\(id)-a.png", "size=3000&type=image/png"),
                harness.fake.url("\(id)-b.png", "size=3100&type=image/png"),
            ])
        #expect(try harness.post(body, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 2)
        let storedAt = Date()
        #expect(try harness.storage().allKeys(prefix: "\(harness.prefix)replicate/\(id)/").count == 2)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the objects deleted by retention") {
            try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1 AND state = 'deleted'", [id], as: Int.self) == 2
        }
        #expect(Date().timeIntervalSince(storedAt) >= 2, "deleted before retention.objects had passed")
        // The objects go right after the tombstone's transaction commits.
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(100), "the objects removed from the bucket") {
            try harness.storage().allKeys(prefix: "\(harness.prefix)replicate/\(id)/").isEmpty
        }
        #expect(try harness.scalar("SELECT deleted_at IS NOT NULL FROM predictions WHERE id = $1", [id], as: Bool.self))
        #expect(
            try harness.scalar(
                "SELECT count(*) FROM assets WHERE prediction_id = $1 AND sha256 IS NOT NULL AND size_bytes > 0",
                [id], as: Int.self) == 2)
        let lookup = try LookupClient(port: daemon.port, token: "tok_objects")
        #expect(try lookup.send("GET", "/v1/predictions/replicate/\(id)").status == 410)
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(200), "objects deleted in /metrics") {
            let metrics = try scrape(daemon)
            return metrics.value("afterimage_objects_deleted_total") == 2 && metrics.value("afterimage_assets", ["state": "deleted"]) == 2
        }
        try lookup.validateCaptured()
        #expect(try daemon.stop() == 0)
    }
}
