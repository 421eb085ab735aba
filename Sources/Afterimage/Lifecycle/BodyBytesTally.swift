import Foundation
import PQ

/// The bytes of raw delivery bodies still kept (`afterimage_delivery_body_bytes`), at a cost that does not
/// grow with the deliveries table.
///
/// Summing `octet_length(body)` over the table read every row of it (at ten million deliveries, gigabytes of
/// heap) each time. Of the ways to avoid that, a running total kept in a one-row table was chosen:
/// - an estimate from the planner's statistics (`pg_class`, `pg_stats`) is cheap but wrong here: bodies
///   are either ~1 KB or tens of MiB, and `avg_width` counts a TOASTed body as its 18-byte pointer;
/// - summing only the kept bodies through the partial index still reads every body younger than
///   `retention.delivery_bodies` (a week of deliveries) each time.
///
/// `body_bytes_tally` (migration 0021) holds the total of the kept bodies up to a place in the
/// `(received_at, id)` order of `deliveries_bodies_kept_idx`. Each measure, in one statement (one
/// snapshot), adds the bodies received since that place (a range of the index: what came in since the last
/// measure), takes off the bodies pruned since, which a trigger notes in `body_bytes_pruned` whatever pruned
/// them (retention, a delete, a delivery naming a deleted prediction), and moves the place on. The newest
/// `settleSeconds` of deliveries are left out of the total (one may still be committing with an older
/// `received_at`) and summed whole each time instead. So a measure costs the deliveries of the time since
/// the last one plus those of `settleSeconds`.
///
/// On a database upgraded with many deliveries, the first measures catch up `chunkRows` kept bodies per
/// statement; the gauge is set once they have. The total is exact but for a delivery that committed more
/// than `settleSeconds` after it was received (not known to happen: intake commits within its statement
/// timeout), which the total would miss.
public struct BodyBytesTally: Sendable {
    public var chunkRows = 20_000
    public var settleSeconds = 120

    public init() {}

    /// Adds up to `chunkRows` newly received bodies and takes off the pruned ones. Returns whether the tally
    /// has caught up with the bodies older than `settleSeconds`.
    public func advance(on connection: Connection) throws -> Bool {
        try connection.transaction { tx in
            // Serialises daemons sharing the database; the statement below then sees the other's result.
            let through = try place(on: tx, lock: true)
            // The place is sent as parameters: planned with its values, the scan is a range of the partial index.
            let added = try tx.query(
                """
                WITH scan AS (
                    SELECT d.received_at, d.id, octet_length(d.body)::bigint AS size FROM deliveries d
                    WHERE d.body_pruned_at IS NULL AND (d.received_at, d.id) > ($1::timestamptz, $2::int8)
                      AND d.received_at < now() - make_interval(secs => $3)
                    ORDER BY d.received_at, d.id LIMIT $4),
                last AS (SELECT received_at, id FROM scan ORDER BY received_at DESC, id DESC LIMIT 1),
                folded AS (DELETE FROM body_bytes_pruned RETURNING received_at, id, size)
                UPDATE body_bytes_tally b SET
                    kept_bytes = greatest(0, b.kept_bytes + (SELECT coalesce(sum(size), 0) FROM scan)
                        - (SELECT coalesce(sum(f.size), 0) FROM folded f WHERE (f.received_at, f.id) <= ($1::timestamptz, $2::int8))),
                    through_at = coalesce((SELECT received_at FROM last), b.through_at),
                    through_id = coalesce((SELECT id FROM last), b.through_id)
                WHERE b.only_row
                RETURNING (SELECT count(*) FROM scan)
                """, [through.at, through.id, settleSeconds, chunkRows])
            return try (added.first?.decode(0, as: Int64.self) ?? 0) < Int64(chunkRows)
        }
    }

    /// The tally plus the kept bodies received after its place (the last `settleSeconds` or so).
    public func total(on connection: Connection) throws -> Int64 {
        let through = try place(on: connection, lock: false)
        let tail =
            try connection.query(
                """
                SELECT coalesce(sum(octet_length(body)), 0)::bigint FROM deliveries
                WHERE body_pruned_at IS NULL AND (received_at, id) > ($1::timestamptz, $2::int8)
                """, [through.at, through.id]
            ).first?.decode(0, as: Int64.self) ?? 0
        return through.keptBytes + tail
    }

    /// The tally's row; `at` as PostgreSQL's text, which reads back exactly (a `Date` rounds, and
    /// `-infinity` is none).
    func place(on connection: Connection, lock: Bool) throws -> (keptBytes: Int64, at: String, id: Int64) {
        guard
            let row = try connection.query(
                "SELECT kept_bytes, through_at::text, through_id FROM body_bytes_tally WHERE only_row" + (lock ? " FOR UPDATE" : "")
            ).first
        else { throw PQError(code: .queryFailed, message: "body_bytes_tally has no row (migration 0021)") }
        return (try row.decode(0, as: Int64.self), try row.decode(1, as: String.self), try row.decode(2, as: Int64.self))
    }
}
