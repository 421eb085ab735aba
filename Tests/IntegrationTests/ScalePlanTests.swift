import AfterimageTestSupport
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Background questions whose cost must follow the work in progress, not the size of the archive: their
/// plans against a real PostgreSQL with many finished rows and few unfinished ones.
@Suite("Plans that stay flat as the archive grows")
struct ScalePlanTests {
    /// Without `predictions_unfinished_idx` the reconciler's stale-prediction question is a sequential scan
    /// of every prediction, every pass.
    @Test func theReconcilersStaleQuestionReadsOnlyUnfinishedPredictions() throws {
        let connection = try Connection.connect(url: try TestEnvironment.migratedDatabase(prefix: "scaleplan"))
        defer { connection.close() }
        try connection.execute(
            """
            INSERT INTO predictions (provider, id, status, updated_at)
            SELECT 'replicate', 'done-' || g, 'succeeded', now() - interval '2 days' FROM generate_series(1, 50000) AS g
            """)
        try connection.execute(
            """
            INSERT INTO predictions (provider, id, status, updated_at)
            SELECT 'replicate', 'busy-' || g, 'processing', now() - interval '1 hour' FROM generate_series(1, 20) AS g
            """)
        try connection.execute("ANALYZE predictions")
        let parameters: [any PQEncodable] = [ProviderName.replicate, 900, "[\"busy-1\"]", 100]
        let plan = try connection.query("EXPLAIN " + ReplicateReconciler.staleSQL, parameters)
            .map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
        #expect(plan.contains("predictions_unfinished_idx"), "\(plan)")
        #expect(!plan.contains("Seq Scan on predictions"), "\(plan)")
        let stale = try connection.query(ReplicateReconciler.staleSQL, parameters).map { try $0.decode(0, as: String.self) }
        #expect(stale.count == 19 && stale.allSatisfy { $0.hasPrefix("busy-") } && !stale.contains("busy-1"))
    }
}
