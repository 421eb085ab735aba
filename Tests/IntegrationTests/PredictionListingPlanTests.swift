import AfterimageTestSupport
import Foundation
import Logging
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// GET /v1/predictions stays an index range scan on a large table: a million predictions (and as many
/// assets), every combination of filters and cursor, as the custom plan PostgreSQL makes for the first
/// executions of a prepared statement and as the plan it settles on afterwards.
@Suite("Prediction listing: index scans on a million rows")
struct PredictionListingPlanTests {
    @Test func everyFilterCombinationIsAnIndexRangeScan() throws {
        let databaseURL = try TestEnvironment.migratedDatabase(prefix: "plan")
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        // One prediction a second over the last ~11.5 days; 2 % from a second provider; a few failed or canceled.
        try connection.execute(
            """
            INSERT INTO predictions (provider, id, status, model, first_seen_at, updated_at)
            SELECT CASE WHEN g % 50 = 0 THEN 'stability' ELSE 'replicate' END, 'p' || g,
                   CASE WHEN g % 20 = 0 THEN 'failed' WHEN g % 100 = 1 THEN 'canceled' ELSE 'succeeded' END,
                   'owner/model', now() - g * interval '1 second', now()
            FROM generate_series(1, 1000000) g
            """)
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, stored_at)
            SELECT CASE WHEN g % 50 = 0 THEN 'stability' ELSE 'replicate' END, 'p' || g, '/0', 0, 'https://x/' || g, 'stored',
                   'k/' || g || '.png', now()
            FROM generate_series(1, 1000000) g
            """)
        try connection.execute("VACUUM ANALYZE predictions")
        try connection.execute("VACUUM ANALYZE assets")
        #expect(try connection.query("SELECT count(*) FROM predictions").first?.decode(0, as: Int.self) == 1_000_000)

        let middle: String = try #require(
            try connection.query(
                "SELECT first_seen_at::text FROM predictions WHERE provider = 'stability' AND id = 'p500000'"
            ).first?.decode(0))
        let cursors: [(String, PredictionCursor?)] = [
            ("no cursor", nil),
            ("cursor", PredictionCursor(firstSeenAt: middle, provider: "stability", id: "p500000")),
        ]
        for (provider, status) in [(nil, nil), ("stability", nil), (nil, "failed"), ("stability", "failed"), ("replicate", "canceled")]
            as [(String?, String?)]
        {
            for (cursorName, cursor) in cursors {
                if let provider, let cursor, provider != cursor.provider { continue }
                let filter = LookupStore.PredictionFilter(provider: provider, status: status, before: cursor, limit: 30)
                let (sql, parameters) = LookupStore.predictionListQuery(filter)
                let literals = parameters.map { literal($0) }
                // The custom plan of the first executions, then the plan PostgreSQL settles on after them
                // (a generic one only where it is estimated no dearer).
                for (mode, warmUp) in [("force_custom_plan", 0), ("auto", 8)] {
                    try connection.execute("SET plan_cache_mode = \(mode)")
                    let plan = try explain(sql, parameters: literals, warmUp: warmUp, on: connection)
                    let what = "provider \(provider ?? "any"), status \(status ?? "any"), \(cursorName), plan_cache_mode \(mode)"
                    #expect(!plan.contains("Seq Scan"), "\(what): a sequential scan\n\(plan)")
                    // A common provider may be read from the all-providers index (its rows are most of it).
                    #expect(
                        plan.contains("Index Scan Backward using predictions_recent_idx")
                            || plan.contains("Index Scan Backward using predictions_provider_recent_idx"),
                        "\(what): not a backward scan of a listing index\n\(plan)")
                    if provider == "stability" {
                        #expect(plan.contains("predictions_provider_recent_idx"), "\(what): a rare provider must use its index\n\(plan)")
                    }
                    // Either unique index that leads with (provider, prediction_id) serves the join.
                    #expect(
                        plan.contains("Index Scan using assets_provider_prediction_pointer_key")
                            || plan.contains("Index Scan using assets_provider_prediction_index_key"),
                        "\(what): assets not joined by index\n\(plan)")
                }
                try connection.execute("RESET plan_cache_mode")
                // And the statement really answers a full page from the big table.
                let page = try LookupStore().predictions(filter, on: connection)
                #expect(page.predictions.count == 30, "provider \(provider ?? "any"), status \(status ?? "any"), \(cursorName)")
                #expect(page.next != nil)
                #expect(page.predictions.allSatisfy { $0.assets.count == 1 })
                if let provider { #expect(page.predictions.allSatisfy { $0.provider == provider }) }
                if let status { #expect(page.predictions.allSatisfy { $0.status == status }) }
            }
        }
    }

    /// A parameter as an SQL literal for EXECUTE (the types come from the prepared statement).
    func literal(_ value: any PQEncodable) -> String {
        if let optional = value as? String? {
            guard let text = optional else { return "NULL" }
            return "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
        }
        return "'\(value)'"
    }
}
