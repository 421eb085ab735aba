import Foundation
import Logging
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Issue 13.12: `(provider, prediction_id, output_index)` is unique, so two assets never write the same
/// object key; an output a later delivery finds takes the next free number.
@Suite("Output numbers are unique per prediction")
struct OutputNumberingTests {
    static let logger = Logger(label: "test")

    func ideogram(_ id: String, _ urls: [(index: Int, url: String)]) -> WebhookDelivery {
        var data = [[String: Any]](repeating: ["url": "", "is_image_safe": false], count: (urls.map(\.index).max() ?? -1) + 1)
        for (index, url) in urls { data[index] = ["url": url, "seed": index, "is_image_safe": true] }
        let body = Array(
            try! JSONSerialization.data(
                withJSONObject: ["generation_id": id, "created": "2026-11-21T10:00:00Z", "data": data],
                options: [.sortedKeys]))
        return WebhookDelivery(provider: .ideogram, deliveryID: "\(id):\(UUID().uuidString)", subject: id, timestamp: Date(), body: body)
    }

    @Test func aLaterDeliveryTakesTheNextFreeNumber() throws {
        let url = try TestEnvironment.freshDatabase(prefix: "numbers")
        try Migrator().migrate(databaseURL: url, logger: Self.logger)
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        let keys = WebhookKeySet(
            provider: .ideogram, jwksURL: "http://127.0.0.1:9/", cacheFile: nil,
            policy: { FetchPolicy(Settings.Fetch()) }, logger: Self.logger)
        let recorder = DeliveryRecorder(providers: [IdeogramProvider(keys: keys)])
        #expect(
            try recorder.record(ideogram("g1", [(0, "https://ideogram.ai/a.png"), (1, "https://ideogram.ai/b.png")]), on: connection)
                == .accepted(predictionID: "g1", assets: 2))
        // Another body for the same generation: image 0 again (already queued), and a new one that is second
        // in its walk order, a number the prediction already uses.
        #expect(
            try recorder.record(ideogram("g1", [(0, "https://ideogram.ai/a.png"), (4, "https://ideogram.ai/e.png")]), on: connection)
                == .accepted(predictionID: "g1", assets: 2))
        let rows = try connection.query("SELECT pointer, output_index FROM assets WHERE prediction_id = 'g1' ORDER BY output_index").map {
            (try $0.decode(0, as: String.self), try $0.decode(1, as: Int.self))
        }
        #expect(rows.map(\.0) == ["/0/url", "/1/url", "/4/url"])
        #expect(rows.map(\.1) == [0, 1, 2])

        // The database holds it too.
        #expect(throws: PQError.self) {
            try connection.execute(
                """
                INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url) VALUES ('ideogram', 'g1', '/9/url', 1, 'https://ideogram.ai/x.png')
                """)
        }
    }

    /// A database from before 0007 whose assets share numbers: the oldest keeps its number, the others move
    /// past the highest, and the constraint is in force afterwards.
    @Test func theMigrationRenumbersSharedNumbers() throws {
        let url = try TestEnvironment.freshDatabase(prefix: "renumber")
        let before = Migration.bundled.filter { $0.name != "0007_asset_index_unique.sql" }
        try Migrator(migrations: before).migrate(databaseURL: url, logger: Self.logger)
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        try connection.execute(
            "INSERT INTO predictions (provider, id, status) VALUES ('stability', 'p', 'succeeded'), ('stability', 'q', 'succeeded')")
        for (prediction, pointer, index) in [("p", "/a", 0), ("p", "/b", 0), ("p", "/c", 1), ("p", "/d", 0), ("q", "/a", 0)] {
            try connection.execute(
                """
                INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url) VALUES ('stability', $1, $2, $3, 'inline:x')
                """, [prediction, pointer, index])
        }
        #expect(try Migrator().migrate(databaseURL: url, logger: Self.logger) == ["0007_asset_index_unique.sql"])
        let rows = try connection.query("SELECT prediction_id, pointer, output_index FROM assets ORDER BY prediction_id, pointer").map {
            "\(try $0.decode(0, as: String.self))\(try $0.decode(1, as: String.self))=\(try $0.decode(2, as: Int.self))"
        }
        #expect(rows == ["p/a=0", "p/b=2", "p/c=1", "p/d=3", "q/a=0"])
        #expect(throws: PQError.self) {
            try connection.execute("UPDATE assets SET output_index = 0 WHERE prediction_id = 'p' AND pointer = '/c'")
        }
    }
}
