import AfterimageTestSupport
import Foundation
import Logging
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// The queue's SQL against a real database: deadline order, leases and claim tokens.
@Suite("Archive queue")
struct ArchiveQueueTests {
    func migratedDatabase() throws -> Connection {
        let url = try TestEnvironment.migratedDatabase(prefix: "queue")
        let connection = try Connection.connect(url: url)
        try connection.execute("INSERT INTO predictions (provider, id, status) VALUES ('replicate', 'p', 'succeeded')")
        return connection
    }

    func insertAsset(_ connection: Connection, pointer: String, deadline: Date?) throws {
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline)
            VALUES ('replicate', 'p', $1, (SELECT COALESCE(max(output_index) + 1, 0) FROM assets WHERE provider = 'replicate' AND prediction_id = 'p'),
                    'https://replicate.delivery/x', $2)
            """, [pointer, deadline])
    }

    @Test func claimsComeEarliestDeadlineFirst() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        let now = Date()
        try insertAsset(connection, pointer: "/late", deadline: now.addingTimeInterval(3000))
        try insertAsset(connection, pointer: "/none", deadline: nil)
        try insertAsset(connection, pointer: "/soon", deadline: now.addingTimeInterval(60))
        try insertAsset(connection, pointer: "/middle", deadline: now.addingTimeInterval(600))
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        var order: [String] = []
        while let job = try queue.claim(on: connection) {
            order.append(try connection.query("SELECT pointer FROM assets WHERE id = $1", [job.assetID]).first!.decode(0, as: String.self))
        }
        #expect(order == ["/soon", "/middle", "/late", "/none"])
    }

    @Test func aWorkerThatLostItsLeaseCannotOverwriteTheNewOwner() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        try insertAsset(connection, pointer: "/0", deadline: Date().addingTimeInterval(600))
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        let first = try #require(try queue.claim(on: connection))
        #expect(try queue.claim(on: connection) == nil, "a leased job was handed out twice")
        // The first owner stalls past its lease; the lease is reclaimed and another worker takes the job.
        try connection.execute("UPDATE assets SET lease_expires_at = now() - interval '1 second'")
        #expect(try queue.reclaimExpiredLeases(on: connection) == 1)
        let second = try #require(try queue.claim(on: connection))
        #expect(second.claimToken != first.claimToken)
        #expect(second.attempts == 2)
        let result = ArchiveQueue.Stored(key: "k", size: 1, sha256: String(repeating: "0", count: 64), contentType: nil, etag: nil)
        #expect(try queue.markStored(first, result, on: connection) == nil)
        #expect(try queue.retry(first, at: Date(), error: "late", on: connection) == false)
        #expect(try queue.finish(first, state: .failed, reason: "late", on: connection) == false)
        #expect(try queue.renew([(first.assetID, first.claimToken)], on: connection) == [first.assetID])
        let timing = try #require(try queue.markStored(second, result, on: connection))
        #expect(timing.secondsSinceWebhook >= 0 && timing.secondsSinceWebhook < 3600)
        #expect(try connection.query("SELECT state FROM assets").first?.decode(0, as: String.self) == "stored")
    }

    /// Issue 17: a claim and a spool record are one autocommit statement each that turns off the WAL flush
    /// wait for its own transaction only. A deferred constraint trigger runs as the transaction commits and
    /// notes the setting then: `off` for the claim and the spool record, `on` for the outcome (durable), and
    /// the session keeps its default afterwards.
    @Test func claimsAndSpoolRecordsCommitWithoutWaitingForTheFlush() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        try connection.executeScript(
            """
            CREATE TABLE commit_settings (n bigserial, setting text);
            CREATE FUNCTION note_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO commit_settings (setting) VALUES (current_setting('synchronous_commit'));
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER note_commit_setting AFTER UPDATE ON assets DEFERRABLE INITIALLY DEFERRED
                FOR EACH ROW EXECUTE FUNCTION note_commit_setting();
            """)
        func settingsAtCommit() throws -> [String] {
            defer { _ = try? connection.execute("DELETE FROM commit_settings") }
            return try connection.query("SELECT setting FROM commit_settings ORDER BY n").map { try $0.decode(0, as: String.self) }
        }
        try insertAsset(connection, pointer: "/0", deadline: Date().addingTimeInterval(600))
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        let job = try #require(try queue.claim(on: connection))
        #expect(try settingsAtCommit() == ["off"], "the claim's commit waited for the flush")
        let spooled = Spooled(path: "/spool/0", sha256: String(repeating: "0", count: 64), size: 1, contentType: "image/png")
        #expect(try queue.recordSpool(job, spooled, on: connection))
        #expect(try settingsAtCommit() == ["off"], "the spool record's commit waited for the flush")
        let stored = ArchiveQueue.Stored(key: "k", size: 1, sha256: String(repeating: "0", count: 64), contentType: nil, etag: nil)
        #expect(try queue.markStored(job, stored, on: connection) != nil)
        #expect(try settingsAtCommit() == ["on"], "an outcome must wait for the flush")
        #expect(try connection.query("SHOW synchronous_commit").first?.decode(0, as: String.self) == "on")
    }

    /// Inside a caller's transaction the setting would last until the caller's COMMIT: refused.
    @Test func aClaimRefusesToRunInsideAnOpenTransaction() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        try insertAsset(connection, pointer: "/0", deadline: nil)
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        #expect(throws: PQError.self) {
            try connection.transaction { tx in _ = try queue.claim(on: tx) }
        }
        #expect(try queue.claim(on: connection) != nil, "the refused claim took the asset")
    }

    /// A row another worker has locked is passed over at once (SKIP LOCKED), not waited for; an asset
    /// backing off is not due even when its deadline is the earliest.
    @Test func claimsPassOverLockedRowsAndAssetsBackingOff() throws {
        let url = try TestEnvironment.migratedDatabase(prefix: "queue")
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        try connection.execute("INSERT INTO predictions (provider, id, status) VALUES ('replicate', 'p', 'succeeded')")
        let now = Date()
        try insertAsset(connection, pointer: "/first", deadline: now.addingTimeInterval(60))
        try insertAsset(connection, pointer: "/second", deadline: now.addingTimeInterval(120))
        try insertAsset(connection, pointer: "/backing-off", deadline: now.addingTimeInterval(30))
        try connection.execute("UPDATE assets SET next_attempt_at = now() + interval '1 hour' WHERE pointer = '/backing-off'")
        try connection.execute("SET lock_timeout = '5s'")  // a claim that waited would fail here, not hang
        let other = try Connection.connect(url: url)
        defer { other.close() }
        try other.execute("BEGIN")
        try other.execute("SELECT id FROM assets WHERE pointer = '/first' FOR UPDATE")
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        func pointer(_ job: ArchiveJob?) throws -> String? {
            guard let job else { return nil }
            return try connection.query("SELECT pointer FROM assets WHERE id = $1", [job.assetID]).first?.decode(0, as: String.self)
        }
        #expect(try pointer(queue.claim(on: connection)) == "/second")
        #expect(try queue.claim(on: connection) == nil, "a locked or backing-off asset was claimed")
        try other.execute("ROLLBACK")
        #expect(try pointer(queue.claim(on: connection)) == "/first")
        #expect(try queue.claim(on: connection) == nil)
    }

    /// Issue 17: the claim is a range of `assets_claim_order_idx`, in the claim's own order: no sort of the
    /// pending assets that share a deadline (the old index's plan sorted them for every claim).
    @Test func theClaimReadsTheQueueInItsOwnOrder() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        // 20,000 pending assets, 200 to a deadline, every tenth backing off.
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline, next_attempt_at)
            SELECT 'replicate', 'q-' || g, '/0', 0, 'https://replicate.delivery/x/' || g, now() + (g / 200) * interval '1 second',
                   CASE WHEN g % 10 = 0 THEN now() + interval '1 day' ELSE now() - interval '1 second' END
            FROM generate_series(1, 20000) AS g
            """)
        try connection.execute("ANALYZE assets")
        let plan = try connection.query("EXPLAIN " + ArchiveQueue.claimSQL, [UUID(), "test", 30]).map { try $0.decode(0, as: String.self) }
            .joined(separator: "\n")
        #expect(plan.contains("assets_claim_order_idx"), "\(plan)")
        #expect(!plan.contains("Sort"), "\(plan)")
    }

    /// The spool record is one statement that turns off the wait for the WAL flush for its own transaction
    /// only: it writes with the claim token alone, and the connection's later transactions (outcomes such
    /// as `markStored`) still wait for the flush.
    @Test func theSpoolRecordIsGuardedByTheTokenAndLeavesCommitsDurable() throws {
        let connection = try migratedDatabase()
        defer { connection.close() }
        try insertAsset(connection, pointer: "/0", deadline: Date().addingTimeInterval(600))
        let queue = ArchiveQueue(leaseSeconds: 30, instanceName: "test")
        let job = try #require(try queue.claim(on: connection))
        let stranger = ArchiveJob(
            assetID: job.assetID, provider: job.provider, predictionID: job.predictionID, outputIndex: job.outputIndex,
            sourceURL: job.sourceURL, deadline: job.deadline, attempts: job.attempts, claimToken: UUID(),
            spoolPath: nil, spoolSHA256: nil, spoolSize: nil, contentType: nil)
        let spooled = Spooled(path: "/spool/asset-1.spool", sha256: String(repeating: "a", count: 64), size: 7, contentType: "image/png")
        #expect(try queue.recordSpool(stranger, spooled, on: connection) == false)
        #expect(try connection.query("SELECT spool_path FROM assets").first?.decode(0, as: String?.self) == nil)
        #expect(try queue.recordSpool(job, spooled, on: connection) == true)
        let row = try #require(try connection.query("SELECT spool_path, spool_sha256, spool_size, content_type FROM assets").first)
        #expect(try row.decode(0, as: String.self) == spooled.path)
        #expect(try row.decode(1, as: String.self) == spooled.sha256)
        #expect(try row.decode(2, as: Int64.self) == 7)
        #expect(try row.decode(3, as: String.self) == "image/png")
        #expect(try connection.query("SHOW synchronous_commit").first?.decode(0, as: String.self) == "on")
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    let policy = RetryPolicy()
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func backoffGrowsAndIsCapped() {
        let error = ArchiveError(.transport, "reset")
        var previous = 0.0
        for attempt in 1...12 {
            guard case .retry(let at) = policy.decide(error, attempts: attempt, deadline: nil, now: now, jitter: 1) else {
                Issue.record("attempt \(attempt) gave up")
                return
            }
            let delay = at.timeIntervalSince(now)
            #expect(delay >= previous && delay <= policy.maxDelay)
            previous = delay
        }
        #expect(previous == policy.maxDelay)
    }

    @Test func neverScheduledPastTheDeadlineWhileAnEarlierTryIsPossible() {
        let deadline = now.addingTimeInterval(40)
        guard case .retry(let at) = policy.decide(ArchiveError(.transport, "x"), attempts: 9, deadline: deadline, now: now, jitter: 1.25) else {
            Issue.record("gave up")
            return
        }
        #expect(at < deadline)
    }

    @Test func permanentOutcomes() {
        #expect(policy.decide(ArchiveError(.tooLarge, "big"), attempts: 1, deadline: nil, now: now) == .fail(reason: "big"))
        #expect(policy.decide(ArchiveError(.blockedAddress, "private"), attempts: 1, deadline: nil, now: now) == .fail(reason: "private"))
        let past = now.addingTimeInterval(-1)
        if case .expire = policy.decide(ArchiveError(.sourceStatus, "404", status: 404), attempts: 1, deadline: past, now: now) {
        } else {
            Issue.record("404 after the deadline should expire")
        }
        let future = now.addingTimeInterval(3600)
        if case .retry = policy.decide(ArchiveError(.sourceStatus, "404", status: 404), attempts: 1, deadline: future, now: now) {
        } else {
            Issue.record("an early 404 deserves another try")
        }
        if case .fail = policy.decide(
            ArchiveError(.sourceStatus, "403", status: 403), attempts: policy.maxClientErrorAttempts, deadline: future, now: now)
        {
        } else {
            Issue.record("repeated 4xx before the deadline should fail")
        }
        if case .retry = policy.decide(ArchiveError(.sourceStatus, "429", status: 429), attempts: 10, deadline: future, now: now) {
        } else {
            Issue.record("429 is retryable")
        }
        if case .fail = policy.decide(ArchiveError(.storage, "down"), attempts: policy.maxAttempts, deadline: future, now: now) {
        } else {
            Issue.record("nothing retries forever")
        }
    }
}
