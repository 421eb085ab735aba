import Foundation
import PQ

/// One claimed asset: everything a worker needs, and the token that proves it still owns the job.
public struct ArchiveJob: Sendable {
    public let assetID: Int64
    public let provider: ProviderName
    public let predictionID: String
    public let outputIndex: Int
    public let sourceURL: String
    public let deadline: Date?
    public let attempts: Int
    public let claimToken: UUID
    /// Left by an earlier try whose upload failed: upload from here without downloading again.
    public let spoolPath: String?
    public let spoolSHA256: String?
    public let spoolSize: Int64?
    public let contentType: String?
    /// Where the bytes come from; decides which source the archiver uses.
    public var sourceKind: AssetSourceKind = .url
}

/// The queue is the `assets` table. Claims use `FOR UPDATE SKIP LOCKED` so any number of workers in any
/// number of daemons take distinct rows, earliest deadline first. Every write after the claim is guarded
/// by the claim token: a worker whose lease expired and was reclaimed cannot overwrite the new owner.
public struct ArchiveQueue: Sendable {
    public let leaseSeconds: Int
    public let instanceName: String

    public init(leaseSeconds: Int, instanceName: String) {
        self.leaseSeconds = leaseSeconds
        self.instanceName = instanceName
    }

    public func claim(on connection: Connection) throws -> ArchiveJob? {
        let token = UUID()
        let rows = try Self.withoutWaitingForFlush(connection) { tx in
            try tx.query(
                prepared: """
                    WITH next AS (
                        SELECT id FROM assets
                        WHERE state = 'pending' AND next_attempt_at <= now()
                        ORDER BY deadline NULLS LAST, id
                        LIMIT 1
                        FOR UPDATE SKIP LOCKED
                    )
                    UPDATE assets AS a
                    SET state = 'in_flight', claim_token = $1, claimed_by = $2,
                        lease_expires_at = now() + make_interval(secs => $3), attempts = a.attempts + 1, updated_at = now()
                    FROM next WHERE a.id = next.id
                    RETURNING a.id, a.provider, a.prediction_id, a.output_index, a.source_url, a.deadline, a.attempts,
                              a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.source_kind
                    """, [token, instanceName, leaseSeconds])
        }
        guard let row = rows.first else { return nil }
        return ArchiveJob(
            assetID: try row.decode(0, as: Int64.self), provider: try row.decode(1, as: ProviderName.self),
            predictionID: try row.decode(2, as: String.self), outputIndex: try row.decode(3, as: Int.self),
            sourceURL: try row.decode(4, as: String.self), deadline: try row.decode(5, as: Date?.self),
            attempts: try row.decode(6, as: Int.self), claimToken: token,
            spoolPath: try row.decode(7, as: String?.self), spoolSHA256: try row.decode(8, as: String?.self),
            spoolSize: try row.decode(9, as: Int64?.self), contentType: try row.decode(10, as: String?.self),
            sourceKind: AssetSourceKind(rawValue: try row.decode(11, as: String.self)) ?? .url)
    }

    /// Extends the leases of the jobs still running here; returns the ids whose lease was lost.
    public func renew(_ jobs: [(Int64, UUID)], on connection: Connection) throws -> Set<Int64> {
        guard !jobs.isEmpty else { return [] }
        var lost = Set<Int64>()
        for (id, token) in jobs {
            let updated = try connection.execute(
                """
                UPDATE assets SET lease_expires_at = now() + make_interval(secs => $3)
                WHERE id = $1 AND claim_token = $2 AND state = 'in_flight'
                """, [id, token, leaseSeconds])
            if updated == 0 { lost.insert(id) }
        }
        return lost
    }

    /// Puts jobs whose lease ran out (their daemon died or hung) back in the queue. Returns how many.
    @discardableResult
    public func reclaimExpiredLeases(on connection: Connection) throws -> Int {
        try connection.execute(
            """
            UPDATE assets SET state = 'pending', claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                              next_attempt_at = now(), updated_at = now()
            WHERE state = 'in_flight' AND lease_expires_at < now()
            """)
    }

    /// Releases this instance's jobs at once (drain on SIGTERM) so another instance can take them now.
    public func release(_ job: ArchiveJob, on connection: Connection) throws {
        try connection.execute(
            """
            UPDATE assets SET state = 'pending', claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                              attempts = greatest(attempts - 1, 0), next_attempt_at = now(), updated_at = now()
            WHERE id = $1 AND claim_token = $2
            """, [job.assetID, job.claimToken])
    }

    /// Remembers a complete spool file, so a failed upload does not mean a second download.
    ///
    /// One round trip, once per asset: the statement is its own transaction and turns off the wait for
    /// the WAL flush for itself alone (`set_config(..., true)` lasts until the end of the transaction, and
    /// the commit reads it), where `withoutWaitingForFlush` costs four (`BEGIN`, `SET LOCAL`, the update,
    /// `COMMIT`). A crash may lose this write without harm, as `withoutWaitingForFlush` says.
    public func recordSpool(_ job: ArchiveJob, _ spooled: Spooled, on connection: Connection) throws -> Bool {
        try !connection.query(
            prepared: """
                UPDATE assets SET spool_path = $3, spool_sha256 = $4, spool_size = $5, content_type = $6, updated_at = now()
                FROM (SELECT set_config('synchronous_commit', 'off', true)) AS commit_without_flush
                WHERE id = $1 AND claim_token = $2
                RETURNING id
                """, [job.assetID, job.claimToken, spooled.path, spooled.sha256, spooled.size, spooled.contentType]
        ).isEmpty
    }

    /// Runs `body` in a transaction whose COMMIT does not wait for the WAL flush. Only for writes that a
    /// crash may lose without harm: a lost claim is a lease nobody holds, a lost spool record means one more
    /// download. Outcomes (`markStored`, `finish`) keep full durability. Saves an fsync per write under load.
    static func withoutWaitingForFlush<T>(_ connection: Connection, _ body: (Connection) throws -> T) throws -> T {
        try connection.transaction { tx in
            try tx.execute("SET LOCAL synchronous_commit = off")
            return try body(tx)
        }
    }

    public struct Stored: Sendable {
        public var key: String
        public var size: Int64
        public var sha256: String
        public var contentType: String?
        public var etag: String?
    }

    /// What recording an outcome reports for the metrics: seconds from the webhook to storage, and whether
    /// that was past the deadline. Nil when the lease was lost and nothing was written.
    public struct StoredTiming: Sendable {
        public let secondsSinceWebhook: Double
        public let late: Bool
    }

    public func markStored(_ job: ArchiveJob, _ stored: Stored, on connection: Connection) throws -> StoredTiming? {
        guard
            let row = try connection.query(
                prepared: """
                    UPDATE assets SET state = 'stored', storage_key = $3, size_bytes = $4, sha256 = $5, content_type = $6, etag = $7,
                                      stored_at = now(), claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                                      spool_path = NULL, last_error = NULL, failure_reason = NULL, updated_at = now()
                    WHERE id = $1 AND claim_token = $2
                    RETURNING extract(epoch FROM stored_at - created_at)::float8, coalesce(stored_at > deadline, false)
                    """, [job.assetID, job.claimToken, stored.key, stored.size, stored.sha256, stored.contentType, stored.etag]
            ).first
        else {
            return nil
        }
        return StoredTiming(secondsSinceWebhook: try row.decode(0), late: try row.decode(1))
    }

    /// Whether the asset was deleted (on demand or by retention) while a worker held it: that worker's
    /// writes all failed on the cleared claim token, and what it put in the bucket or the spool must go.
    public func isDeleted(_ job: ArchiveJob, on connection: Connection) throws -> Bool {
        try connection.query("SELECT state = 'deleted' FROM assets WHERE id = $1", [job.assetID]).first?.decode(0, as: Bool.self) ?? false
    }

    /// Schedules another try.
    public func retry(_ job: ArchiveJob, at next: Date, error: String, on connection: Connection) throws -> Bool {
        try connection.execute(
            """
            UPDATE assets SET state = 'pending', next_attempt_at = $3, last_error = $4, claim_token = NULL, claimed_by = NULL,
                              lease_expires_at = NULL, updated_at = now()
            WHERE id = $1 AND claim_token = $2
            """, [job.assetID, job.claimToken, next, error]) == 1
    }

    /// A permanent outcome: `failed` or `expired`, with the reason an operator will read.
    public func finish(_ job: ArchiveJob, state: AssetState, reason: String, on connection: Connection) throws -> Bool {
        precondition(state == .failed || state == .expired)
        return try connection.execute(
            """
            UPDATE assets SET state = $3, failure_reason = $4, last_error = $4, claim_token = NULL, claimed_by = NULL,
                              lease_expires_at = NULL, updated_at = now()
            WHERE id = $1 AND claim_token = $2
            """, [job.assetID, job.claimToken, state, reason]) == 1
    }
}
