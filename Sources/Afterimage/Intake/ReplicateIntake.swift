import Foundation
import PQ

/// What happened to one delivery; the route turns it into the HTTP answer.
public enum IntakeOutcome: Sendable, Equatable {
    /// Recorded and committed; `assets` counts the output files known for the prediction.
    case accepted(predictionID: String, assets: Int)
    /// This webhook id was recorded before; nothing changed.
    case duplicate(predictionID: String?)
    /// Signed, kept raw, but not something we understand.
    case unparseable(message: String)
}

/// Records Replicate deliveries: the raw body, the prediction (monotonic status, fields only fill in)
/// and one asset per output URL, in one transaction, so a 2xx means all of it is durable.
public struct ReplicateIntake: Sendable {
    public static let provider = "replicate"
    /// Channel the workers LISTEN on; a notification means "new pending assets".
    public static let assetsChannel = "afterimage_assets"

    let retention: TimeInterval

    public init(retentionSeconds: Int) {
        retention = TimeInterval(retentionSeconds)
    }

    public struct Delivery: Sendable {
        public var webhookID: String
        public var timestamp: Date?
        public var body: [UInt8]
        /// `webhook` or `reconcile`.
        public var source: String
        public var receivedAt: Date

        public init(webhookID: String, timestamp: Date?, body: [UInt8], source: String = "webhook", receivedAt: Date = Date()) {
            self.webhookID = webhookID
            self.timestamp = timestamp
            self.body = body
            self.source = source
            self.receivedAt = receivedAt
        }
    }

    /// Records one delivery on `connection` inside its own transaction.
    public func record(_ delivery: Delivery, on connection: Connection) throws -> IntakeOutcome {
        let parsed: Result<ReplicatePrediction, ReplicatePrediction.ParseError>
        do { parsed = .success(try ReplicatePrediction.parse(delivery.body)) } catch { parsed = .failure(error) }
        return try connection.transaction { tx in
            switch parsed {
            case .failure(let error):
                _ = try insertDelivery(delivery, outcome: "unparseable", error: error.message, on: tx)
                return .unparseable(message: error.message)
            case .success(let prediction):
                guard try insertDelivery(delivery, outcome: "accepted", error: nil, on: tx) else {
                    return .duplicate(predictionID: prediction.id)
                }
                let assets = try upsert(prediction, receivedAt: delivery.receivedAt, on: tx)
                return .accepted(predictionID: prediction.id, assets: assets)
            }
        }
    }

    /// Inserts the raw delivery; false when this webhook id is already recorded (a retry or a replay).
    func insertDelivery(_ delivery: Delivery, outcome: String, error: String?, on tx: Connection) throws -> Bool {
        let rows = try tx.query("""
            INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (provider, webhook_id) DO NOTHING
            RETURNING id
            """, [Self.provider, delivery.webhookID, delivery.timestamp, delivery.source, delivery.body,
                  delivery.receivedAt, outcome, error])
        return rows.count == 1
    }

    /// Upserts the prediction so that a later event never moves it backwards, then queues its outputs
    /// when the merged prediction is terminal. Returns how many assets the prediction has.
    func upsert(_ p: ReplicatePrediction, receivedAt: Date, on tx: Connection) throws -> Int {
        // rank: starting 0 < processing 1 < terminal 2. The incoming event wins when it is further along,
        // or equally far but not terminal (a terminal status is never replaced, even by another one).
        let rank = { (column: String) in "(CASE \(column) WHEN 'starting' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END)" }
        let newer = "(\(rank("EXCLUDED.status")) > \(rank("predictions.status")) OR (\(rank("EXCLUDED.status")) = \(rank("predictions.status")) AND \(rank("predictions.status")) < 2))"
        func fill(_ column: String) -> String {
            "\(column) = CASE WHEN \(newer) THEN COALESCE(EXCLUDED.\(column), predictions.\(column)) ELSE COALESCE(predictions.\(column), EXCLUDED.\(column)) END"
        }
        let rows = try tx.query("""
            INSERT INTO predictions AS predictions (provider, id, status, model, version, input, output, error, metrics,
                                     created_at, started_at, completed_at, data_removed)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9::jsonb, $10, $11, $12, $13)
            ON CONFLICT (provider, id) DO UPDATE SET
                status = CASE WHEN \(newer) THEN EXCLUDED.status ELSE predictions.status END,
                \(["model", "version", "input", "output", "error", "metrics", "created_at", "started_at", "completed_at"].map(fill).joined(separator: ",\n    "))
                , data_removed = predictions.data_removed OR EXCLUDED.data_removed
                , updated_at = now()
            RETURNING status, output::text, completed_at, data_removed
            """, [Self.provider, p.id, p.status, p.model, p.version, p.inputJSON, p.outputJSON, p.error, p.metricsJSON,
                  p.createdAt, p.startedAt, p.completedAt, p.dataRemoved])
        guard let merged = rows.first else { return 0 }
        let status = try merged.decode(0, as: String.self)
        let outputJSON = try merged.decode(1, as: String?.self)
        let completedAt = try merged.decode(2, as: Date?.self)
        let dataRemoved = try merged.decode(3, as: Bool.self)
        guard ReplicatePrediction.terminalStatuses.contains(status), !dataRemoved, let outputJSON else { return 0 }

        let output = try? JSONSerialization.jsonObject(with: Data(outputJSON.utf8), options: [.fragmentsAllowed])
        let found = OutputURLWalker.urls(in: output)
        guard !found.isEmpty else { return 0 }
        let deadline = (completedAt ?? receivedAt).addingTimeInterval(retention)
        var inserted = 0
        for (index, item) in found.enumerated() {
            inserted += try tx.execute("""
                INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
                """, [Self.provider, p.id, item.pointer, index, item.url, deadline])
        }
        if inserted > 0 {
            try tx.notify(Self.assetsChannel, payload: "\(Self.provider)/\(p.id)")
        }
        return found.count
    }
}
