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

    /// Hands the earliest due `pending` asset to this worker: one statement, one round trip, committed
    /// without waiting for the WAL flush (see `noFlushWait`). `FOR UPDATE SKIP LOCKED` passes over a row
    /// another worker is claiming at this instant, so concurrent claims never wait for each other and never
    /// take the same row. The scan is a range of `assets_claim_order_idx` (migration 0022), which is in this
    /// ORDER BY's order and holds `next_attempt_at`, so it stops at the first due row it can lock, whatever
    /// the queue's length. Throws `invalidUse` inside an open transaction (the setting would outlive it).
    public func claim(on connection: Connection) throws -> ArchiveJob? {
        let token = UUID()
        try Self.requireAutocommit(connection)
        let rows = try connection.query(prepared: Self.claimSQL, [token, instanceName, leaseSeconds])
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

    /// Remembers a complete spool file, so a failed upload does not mean a second download. One statement,
    /// committed without waiting for the WAL flush (`noFlushWait`).
    public func recordSpool(_ job: ArchiveJob, _ spooled: Spooled, on connection: Connection) throws -> Bool {
        try Self.requireAutocommit(connection)
        return try connection.query(
            prepared: """
                WITH \(Self.noFlushWait)
                UPDATE assets SET spool_path = $3, spool_sha256 = $4, spool_size = $5, content_type = $6, updated_at = now()
                FROM no_flush_wait WHERE id = $1 AND claim_token = $2
                """, [job.assetID, job.claimToken, spooled.path, spooled.sha256, spooled.size, spooled.contentType]
        ).rowsAffected == 1
    }

    /// The claim: $1 the new claim token, $2 this instance's name, $3 the lease in seconds.
    static let claimSQL = """
        WITH \(noFlushWait), next AS (
            SELECT id FROM assets
            WHERE state = 'pending' AND next_attempt_at <= now()
            ORDER BY deadline NULLS LAST, id
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE assets AS a
        SET state = 'in_flight', claim_token = $1, claimed_by = $2,
            lease_expires_at = now() + make_interval(secs => $3), attempts = a.attempts + 1, updated_at = now()
        FROM next, no_flush_wait WHERE a.id = next.id
        RETURNING a.id, a.provider, a.prediction_id, a.output_index, a.source_url, a.deadline, a.attempts,
                  a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.source_kind
        """

    /// A CTE that makes the statement's own transaction commit without waiting for the WAL flush. Only for
    /// writes a crash may lose without harm: a lost claim is a lease nobody holds (reclaimed when it runs
    /// out), a lost spool record means one more download. Outcomes (`markStored`, `finish`) keep full
    /// durability. Saves an fsync per write under load.
    ///
    /// How it works in one round trip: a statement sent outside BEGIN runs in an implicit transaction that
    /// commits as the statement ends. `set_config('synchronous_commit', 'off', true)` (true: local to the
    /// transaction) sets it for that transaction; COMMIT reads the setting, and it reverts afterwards, so the
    /// session keeps its default. The statement joins the CTE (`FROM …, no_flush_wait`), so no row is
    /// written unless it was evaluated; MATERIALIZED keeps the planner from folding it away. Verified with
    /// `pg_stat_wal.wal_sync` on an otherwise idle cluster: 2,000 single claims flushed the WAL 2,000 times
    /// as plain statements, 9–32 times with this CTE, 23 times as BEGIN; SET LOCAL …; COMMIT.
    ///
    /// Chosen over the alternatives by bench/scale's claim measurement (1M predictions, 100k pending, 8
    /// clients, one loaded 2-core machine): BEGIN / SET LOCAL / statement / COMMIT costs four round trips
    /// and holds the row lock across three of them; libpq's pipeline mode sends those four at once but the
    /// server still runs four statements, and pipelines need their own error handling in `PQ`. Alternated
    /// runs (pgbench, 8 clients, load average 13–15): this statement p50 6.2 / 7.0 ms, p99 40 / 48 ms; the
    /// pipeline p50 11.7 / 11.9 ms, p99 46 / 39 ms; the transaction p50 11.9 / 21 ms, p99 57 / 111 ms.
    static let noFlushWait = "no_flush_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"

    /// `noFlushWait` inside a caller's open transaction would turn off the flush wait for that whole
    /// transaction, outcomes included; refuse instead.
    static func requireAutocommit(_ connection: Connection) throws {
        guard !connection.isInTransaction else {
            throw PQError(
                code: .invalidUse, message: "a claim or spool record commits on its own; it cannot run inside an open transaction")
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
