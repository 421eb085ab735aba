import Foundation
import PQ

/// The console's health strip: how much waits, how much failed, what was stored today and how much of it
/// late. "Today" is the UTC day (the session runs in UTC).
public struct ConsoleStats: Sendable, Equatable {
    public var pending: Int
    public var inFlight: Int
    public var failed: Int
    public var expired: Int
    /// Deleted on demand or by retention (tombstones).
    public var deleted: Int
    public var storedToday: Int
    /// Stored today after their deadline, plus expired today (the provider deleted them first).
    public var deadlineMissesToday: Int
    /// Pending or in flight and already past their deadline: misses in the making.
    public var overdue: Int
    /// The earliest deadline among pending and in-flight assets (ISO 8601), nil when none waits.
    public var earliestDeadline: String?
    /// The database's clock when the figures were read.
    public var at: String

    /// One statement, every figure an index scan: the per-state counts read `assets_state_id_idx`, the
    /// stored-today ones the partial `assets_stored_at_idx`, the deadline ones the claim index for pending
    /// rows (in-flight rows are few: one per running transfer).
    static let sql = """
        SELECT (SELECT count(*) FROM assets WHERE state = 'pending'),
               (SELECT count(*) FROM assets WHERE state = 'in_flight'),
               (SELECT count(*) FROM assets WHERE state = 'failed'),
               (SELECT count(*) FROM assets WHERE state = 'expired'),
               (SELECT count(*) FROM assets WHERE state = 'deleted'),
               (SELECT count(*) FROM assets WHERE stored_at >= date_trunc('day', now())),
               (SELECT count(*) FROM assets WHERE stored_at >= date_trunc('day', now()) AND stored_at > deadline)
                 + (SELECT count(*) FROM assets WHERE state = 'expired' AND updated_at >= date_trunc('day', now())),
               (SELECT count(*) FROM assets WHERE state = 'pending' AND deadline < now())
                 + (SELECT count(*) FROM assets WHERE state = 'in_flight' AND deadline < now()),
               least((SELECT min(deadline) FROM assets WHERE state = 'pending'),
                     (SELECT min(deadline) FROM assets WHERE state = 'in_flight')),
               now()
        """

    static func query(on connection: Connection) throws -> ConsoleStats {
        guard let row = try connection.query(prepared: sql).first else { throw NoRow() }
        func count(_ column: Int) throws -> Int { Int(clamping: try row.decode(column, as: Int64.self)) }
        return ConsoleStats(
            pending: try count(0), inFlight: try count(1), failed: try count(2), expired: try count(3), deleted: try count(4),
            storedToday: try count(5), deadlineMissesToday: try count(6), overdue: try count(7),
            earliestDeadline: LookupStore.isoTimestamp(try row.decode(8, as: String?.self)),
            at: LookupStore.isoTimestamp(try row.decode(9, as: String.self)))
    }

    /// A SELECT without FROM always returns one row; this is for the impossible case, answered as a 500.
    struct NoRow: Error, CustomStringConvertible {
        var description: String { "the statistics query returned no row" }
    }
}
