import Foundation
import PQ

/// `retention.delivery_bodies`: once every asset of a delivery's prediction is settled (stored, failed,
/// expired or deleted) and the body is older than the setting, the raw body is replaced by its SHA-256 and
/// size (`body_sha256`, `body_size`, `body_pruned_at`). Stability's inline bodies (tens of MiB of base64)
/// are what this is for.
///
/// Small steps that never hold long locks: the deliveries are walked in id order from a position kept in
/// `lifecycle_cursors` (so a restart does not walk them again), a batch of at most `batchRows` rows read by
/// the primary key, and at most `batchBytes` of bodies hashed and cleared in one short statement that
/// checks again, under the row locks, that nothing still needs the body (a hand retry may have queued an
/// inline asset since). Rows passed over because their assets were not settled yet are remembered by the
/// lowest such id and walked again (at most every `rescanInterval`) once the walk has caught up.
public struct BodyRetention: Sendable {
    /// Seconds a body is kept at least.
    public let keepSeconds: Int
    public var batchRows = 200
    public var batchBytes: Int64 = 64 << 20
    public var rescanInterval: TimeInterval = 600
    static let cursorName = "delivery_bodies"

    public init(keepSeconds: Int) { self.keepSeconds = keepSeconds }

    public struct Batch: Sendable, Equatable {
        public var pruned = 0
        public var bytes: Int64 = 0
        /// The walk reached bodies that are too new (or the end): nothing more to do this pass.
        public var caughtUp = false
    }

    /// One batch: reads, prunes, and moves the position on.
    public func runBatch(on connection: Connection) throws -> Batch {
        try connection.execute("INSERT INTO lifecycle_cursors (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", [Self.cursorName])
        guard
            let state = try connection.query(
                """
                SELECT position, held_back_from, rescanned_at < now() - make_interval(secs => $2) FROM lifecycle_cursors WHERE name = $1
                """, [Self.cursorName, rescanInterval]
            ).first
        else { return Batch(caughtUp: true) }
        let position = try state.decode(0, as: Int64.self)
        var heldBack = try state.decode(1, as: Int64?.self)
        let mayRescan = try state.decode(2, as: Bool.self)
        let rows = try connection.query(
            """
            SELECT d.id, d.received_at < now() - make_interval(secs => $3), d.body_pruned_at IS NULL,
                   NOT EXISTS (SELECT 1 FROM assets a WHERE a.provider = d.provider AND a.prediction_id = d.prediction_id
                                                        AND a.state IN ('pending', 'in_flight')),
                   octet_length(d.body)::bigint
            FROM deliveries d WHERE d.id > $1 ORDER BY d.id LIMIT $2
            """, [position, batchRows, keepSeconds])
        var batch = Batch()
        var next = position
        var chosen: [Int64] = []
        var bytes: Int64 = 0
        var full = false
        for row in rows {
            let id = try row.decode(0, as: Int64.self)
            guard try row.decode(1, as: Bool.self) else {
                batch.caughtUp = true
                break
            }
            if try row.decode(2, as: Bool.self) {
                if try row.decode(3, as: Bool.self) {
                    let size = try row.decode(4, as: Int64.self)
                    if !chosen.isEmpty, bytes + size > batchBytes {
                        full = true
                        break
                    }
                    chosen.append(id)
                    bytes += size
                } else {
                    heldBack = min(heldBack ?? id, id)
                }
            }
            next = id
        }
        // The end of the table, every row of a short batch taken: nothing older is left to look at.
        if !full, rows.count < batchRows { batch.caughtUp = true }
        if !chosen.isEmpty {
            let pruned = try connection.query(
                """
                UPDATE deliveries d SET body_sha256 = encode(sha256(d.body), 'hex'), body_size = octet_length(d.body),
                                        body = ''::bytea, body_pruned_at = now()
                WHERE d.id = ANY($1::int8[]) AND d.body_pruned_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM assets a WHERE a.provider = d.provider AND a.prediction_id = d.prediction_id
                                                           AND a.state IN ('pending', 'in_flight'))
                RETURNING d.body_size
                """, [try PQArray<Int64>(chosen.map { Optional($0) })])
            batch.pruned = pruned.count
            batch.bytes = try pruned.reduce(Int64(0)) { $0 + (try $1.decode(0, as: Int64.self)) }
        }
        if batch.caughtUp, let from = heldBack, mayRescan {
            // Walk the held-back stretch again (its assets may have settled by now).
            try connection.execute(
                """
                UPDATE lifecycle_cursors SET position = $2, held_back_from = NULL, rescanned_at = now() WHERE name = $1
                """, [Self.cursorName, from - 1])
        } else {
            try connection.execute(
                "UPDATE lifecycle_cursors SET position = $2, held_back_from = $3 WHERE name = $1",
                [Self.cursorName, next, heldBack])
        }
        return batch
    }

    /// Bytes of raw bodies still kept (a scan of the table's rows: the retention loop asks rarely).
    public static func bytesKept(on connection: Connection) throws -> Int64 {
        try connection.query("SELECT coalesce(sum(octet_length(body)), 0)::bigint FROM deliveries WHERE body_pruned_at IS NULL")
            .first?.decode(0, as: Int64.self) ?? 0
    }
}
