import Foundation
import PQ
import TestSupport
import Testing

/// Issue 13.5: a webhook is answered within `http.intake_timeout` even when its tables are locked, and
/// the provider's retry goes through once the lock is gone.
@Suite("Database deadlines", .serialized)
struct StatementDeadlineTests {
    /// Holds `LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE` on a session of its own until `release()`.
    final class TableLock {
        let connection: Connection
        init(_ harness: ArchiveHarness) throws {
            connection = try harness.connection()
            try connection.execute("BEGIN")
            try connection.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        }
        func release() throws {
            try connection.execute("ROLLBACK")
            connection.close()
        }
    }

    @Test("predictions locked: 503 + Retry-After within 10 s (default settings); after the lock is released the retry is accepted and stored")
    func lockedTableIsAnswered503InTime() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let id = "locked\(UUID().uuidString.prefix(6).lowercased())"
        let name = "\(id).png"
        let body = harness.prediction(id: id, output: [harness.fake.url(name, "size=80000&type=image/png")])
        let webhookID = "msg_\(UUID().uuidString)"
        let timestamp = Int64(Date().timeIntervalSince1970)

        let lock = try TableLock(harness)
        let started = ContinuousClock.now
        let refused = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        let took = ContinuousClock.now - started
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] != nil)
        #expect(took < .seconds(10), "answered after \(took)")
        try lock.release()

        let retried = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        #expect(retried.status == 200)
        #expect(String(decoding: retried.body, as: UTF8.self).contains(#""status":"accepted""#))
        try harness.waitForAssets("stored", count: 1)
        #expect(try harness.storedAssets(predictionID: id).count == 1)
        #expect(try daemon.stop() == 0)
    }

    @Test(
        "http.intake_timeout answers 503 even when the database would wait longer (lock_timeout 60 s); the commit that lands later makes the retry a duplicate"
    )
    func intakeTimeoutIsTheBackstop() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_HTTP_INTAKE_TIMEOUT": "3", "AFTERIMAGE_DATABASE_LOCK_TIMEOUT_MS": "60000"])
        let id = "slow\(UUID().uuidString.prefix(6).lowercased())"
        let body = harness.prediction(id: id, output: [harness.fake.url("\(id).png", "size=1000&type=image/png")])
        let webhookID = "msg_\(UUID().uuidString)"
        let timestamp = Int64(Date().timeIntervalSince1970)

        let lock = try TableLock(harness)
        let started = ContinuousClock.now
        let refused = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        let took = ContinuousClock.now - started
        #expect(refused.status == 503)
        #expect(took >= .seconds(2) && took < .seconds(8), "answered after \(took) with http.intake_timeout = 3")
        try lock.release()

        // The first commit goes through once the lock is gone; the retry then finds it.
        try waitUntil(timeout: .seconds(20), "the held commit to land") {
            try harness.scalar("SELECT count(*) FROM deliveries WHERE webhook_id = $1", [webhookID], as: Int.self) == 1
        }
        let retried = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        #expect(retried.status == 200)
        #expect(String(decoding: retried.body, as: UTF8.self).contains(#""status":"duplicate""#))
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE id = $1", [id], as: Int.self) == 1)
        #expect(try daemon.stop() == 0)
    }
}
