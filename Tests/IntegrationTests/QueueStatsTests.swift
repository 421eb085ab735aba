import AfterimageTestSupport
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// The queue gauges' statistics against a real database. Stored assets are nearly the whole table and are
/// not counted on every refresh: between full counts the figure is the last full count plus what was stored
/// since. These tests fail if the stored figure is recounted each time (the planted tally would be ignored)
/// or if new stores are missed.
@Suite("Queue statistics")
struct QueueStatsTests {
    func database() throws -> Connection {
        let connection = try Connection.connect(url: try TestEnvironment.migratedDatabase(prefix: "queuestats"))
        try connection.execute("INSERT INTO predictions (provider, id, status) VALUES ('replicate', 'p', 'succeeded')")
        return connection
    }

    func insert(_ connection: Connection, _ n: Int, state: AssetState, storedAgo seconds: Int = 0) throws {
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, stored_at)
            SELECT 'replicate', 'p', '/' || (k + o.base), k + o.base, 'https://replicate.delivery/x', $2,
                   CASE WHEN $2 = 'stored' THEN 'k' || (k + o.base) END,
                   CASE WHEN $2 = 'stored' THEN now() - make_interval(secs => $3) END
            FROM generate_series(1, $1::integer) k, (SELECT coalesce(max(output_index), 0) AS base FROM assets) o
            """, [n, state.rawValue, seconds])
    }

    @Test func storedIsCountedOnceThenFollowedByWhatWasStoredSince() throws {
        let connection = try database()
        defer { connection.close() }
        try insert(connection, 5, state: .stored, storedAgo: 60)
        try insert(connection, 3, state: .pending)
        try insert(connection, 2, state: .failed)

        let first = try QueueStats.query(on: connection, stored: nil)
        #expect(first.stats.counts["stored"] == 5)
        #expect(first.stats.counts["pending"] == 3)
        #expect(first.stats.counts["failed"] == 2)
        #expect(first.tally.count == 5)

        // Stored after the full count: followed without a new one. The planted tally (1,000 stored as of the
        // first count) shows that the full count was not redone.
        try insert(connection, 4, state: .stored)
        try insert(connection, 1, state: .pending)
        let planted = QueueStats.StoredTally(count: 1000, asOf: first.tally.asOf)
        let next = try QueueStats.query(on: connection, stored: planted)
        #expect(next.stats.counts["stored"] == 1004)
        #expect(next.stats.counts["pending"] == 4, "the other states are counted on every refresh")
        #expect(next.tally == planted)

        // A full count again (no tally) sees the truth.
        #expect(try QueueStats.query(on: connection, stored: nil).stats.counts["stored"] == 9)
    }
}
