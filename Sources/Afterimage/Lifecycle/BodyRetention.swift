import Foundation
import PQ

/// `retention.delivery_bodies`: once every asset of a delivery's prediction is settled (stored, failed,
/// expired or deleted) and the body is older than the setting, the raw body is replaced by its SHA-256 and
/// size (`body_sha256`, `body_size`, `body_pruned_at`). Stability's inline bodies (tens of MiB of base64)
/// are what this is for.
///
/// Cheap on a big, busy table, whatever `retention.interval` is. The walk reads the partial index of the
/// bodies still kept (`deliveries_bodies_kept_idx`, migration 0021) as one range in `(received_at, id)`
/// order, from a position kept in `lifecycle_cursors` up to now − `keepSeconds`:
/// - it stops at the first body too young *inside the index range*, so new deliveries are never read
///   (walking the primary key instead read a whole batch of rows and probed their assets every pass);
/// - a pruned row leaves the index, so a pass that finds nothing to do is one index probe, and going back
///   over bodies held back (assets not settled yet) reads those bodies only, not every row between them;
/// - held-back bodies are gone over again at most every `rescanInterval`, from the lowest one.
///
/// Locks stay short: a batch is at most `batchRows` rows and `batchBytes` of bodies, hashed and cleared in
/// one statement that checks again, under the row locks, that nothing still needs the body (a hand retry
/// may have queued an inline asset since).
///
/// `received_at` is the daemon's clock when the webhook came in, and a delivery commits a little later. The
/// walk reads only bodies older than `keepSeconds`, so with `keepSeconds` above `lateCommitGrace` nothing
/// can commit behind it; below (a test's few seconds), the position never passes bodies younger than
/// `lateCommitGrace`, and those few are read again each pass.
public struct BodyRetention: Sendable {
    /// Seconds a body is kept at least.
    public let keepSeconds: Int
    public var batchRows = 200
    public var batchBytes: Int64 = 64 << 20
    public var rescanInterval: TimeInterval = 600
    /// Longest time from a delivery's `received_at` to its commit that the walk allows for.
    public var lateCommitGrace = 120
    static let cursorName = "delivery_bodies"

    public init(keepSeconds: Int) { self.keepSeconds = keepSeconds }

    public struct Batch: Sendable, Equatable {
        public var pruned = 0
        public var bytes: Int64 = 0
        /// Bodies looked at (the rows the walk read).
        public var examined = 0
        /// The walk reached bodies that are too new (or the end): nothing more to do this pass.
        public var caughtUp = false
    }

    /// A place in the walk's order: `received_at` in microseconds since 1970 (exact, unlike a `Date`), and id.
    struct Position: Equatable {
        var micros: Int64
        var id: Int64
    }

    struct Cursor: Equatable {
        var position: Position?
        var heldBack: Position?
    }

    /// One batch: reads, prunes, and moves the position on.
    public func runBatch(on connection: Connection) throws -> Batch {
        let (cursor, mayRescan) = try readCursor(on: connection)
        let rows = try connection.query(
            """
            SELECT d.id, (extract(epoch FROM d.received_at) * 1000000)::int8,
                   d.received_at < now() - make_interval(secs => $5),
                   NOT EXISTS (SELECT 1 FROM assets a WHERE a.provider = d.provider AND a.prediction_id = d.prediction_id
                                                        AND a.state IN ('pending', 'in_flight')),
                   octet_length(d.body)::bigint
            FROM deliveries d
            WHERE d.body_pruned_at IS NULL
              AND (d.received_at, d.id) > (coalesce(timestamptz 'epoch' + $1::int8 * interval '1 microsecond', '-infinity'), $2::int8)
              AND d.received_at < now() - make_interval(secs => $4)
            ORDER BY d.received_at, d.id LIMIT $3
            """, [cursor.position?.micros, cursor.position?.id ?? 0, batchRows, keepSeconds, lateCommitGrace])
        var batch = Batch()
        var next = cursor
        var chosen: [Int64] = []
        var bytes: Int64 = 0
        var full = false
        for row in rows {
            let here = Position(micros: try row.decode(1, as: Int64.self), id: try row.decode(0, as: Int64.self))
            let pastGrace = try row.decode(2, as: Bool.self)
            if try row.decode(3, as: Bool.self) {
                let size = try row.decode(4, as: Int64.self)
                if !chosen.isEmpty, bytes + size > batchBytes {
                    full = true
                    break
                }
                chosen.append(here.id)
                bytes += size
            } else if pastGrace, next.heldBack == nil {
                // Rows come in order, and a held-back position already kept lies behind the walk: the first is the lowest.
                next.heldBack = here
            }
            batch.examined += 1
            // Bodies this young are walked again next time (see the type's comment): the position stops short.
            if pastGrace { next.position = here }
        }
        // Every row of a short batch taken: nothing old enough is left to look at. A full batch of young bodies
        // held back (the position cannot pass them): the next batch would read them again, so the pass ends.
        if !full, rows.count < batchRows || (next.position == cursor.position && chosen.isEmpty) { batch.caughtUp = true }
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
        if batch.caughtUp, let from = next.heldBack, mayRescan {
            // Go over the held-back bodies again (their assets may have settled by now), from the lowest.
            next = Cursor(position: Position(micros: from.micros, id: from.id - 1), heldBack: nil)
            try writeCursor(next, rescanned: true, on: connection)
        } else if next != cursor {
            try writeCursor(next, rescanned: false, on: connection)
        }
        return batch
    }

    /// The walk's position, and whether the held-back bodies may be gone over again now.
    func readCursor(on connection: Connection) throws -> (Cursor, mayRescan: Bool) {
        let select = """
            SELECT (extract(epoch FROM position_at) * 1000000)::int8, position,
                   (extract(epoch FROM held_back_at) * 1000000)::int8, held_back_from,
                   rescanned_at < now() - make_interval(secs => $2)
            FROM lifecycle_cursors WHERE name = $1
            """
        var row = try connection.query(select, [Self.cursorName, rescanInterval]).first
        if row == nil {
            try connection.execute("INSERT INTO lifecycle_cursors (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", [Self.cursorName])
            row = try connection.query(select, [Self.cursorName, rescanInterval]).first
        }
        guard let row else { throw PQError(code: .queryFailed, message: "lifecycle_cursors has no \(Self.cursorName) row") }
        var cursor = Cursor()
        if let micros = try row.decode(0, as: Int64?.self) { cursor.position = Position(micros: micros, id: try row.decode(1, as: Int64.self)) }
        if let micros = try row.decode(2, as: Int64?.self), let id = try row.decode(3, as: Int64?.self) {
            cursor.heldBack = Position(micros: micros, id: id)
        }
        return (cursor, try row.decode(4, as: Bool.self))
    }

    func writeCursor(_ cursor: Cursor, rescanned: Bool, on connection: Connection) throws {
        try connection.execute(
            """
            UPDATE lifecycle_cursors
            SET position_at = timestamptz 'epoch' + $2::int8 * interval '1 microsecond', position = $3,
                held_back_at = timestamptz 'epoch' + $4::int8 * interval '1 microsecond', held_back_from = $5,
                rescanned_at = CASE WHEN $6 THEN now() ELSE rescanned_at END
            WHERE name = $1
            """,
            [
                Self.cursorName, cursor.position?.micros, cursor.position?.id ?? 0, cursor.heldBack?.micros, cursor.heldBack?.id,
                rescanned,
            ])
    }
}
