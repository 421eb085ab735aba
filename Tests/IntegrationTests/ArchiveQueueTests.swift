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
