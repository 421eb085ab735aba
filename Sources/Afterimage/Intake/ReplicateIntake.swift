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
///
/// Works on batches: concurrent webhooks are committed together (see `IntakeBatcher`), and a batch costs
/// a fixed handful of statements whatever its size — each statement takes the whole batch as one JSON
/// parameter expanded by `jsonb_to_recordset`. A batch of one is the plain case.
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
        try recordBatch([delivery], on: connection)[0]
    }

    /// Records several deliveries in one transaction; outcomes come back in the same order.
    public func recordBatch(_ deliveries: [Delivery], on connection: Connection) throws -> [IntakeOutcome] {
        guard !deliveries.isEmpty else { return [] }
        let parsed = deliveries.map { delivery -> Result<ReplicatePrediction, ReplicatePrediction.ParseError> in
            do throws(ReplicatePrediction.ParseError) {
                return .success(try ReplicatePrediction.parse(delivery.body))
            } catch {
                return .failure(error)
            }
        }
        return try connection.transaction { tx in
            let inserted = try insertDeliveries(deliveries, parsed: parsed, on: tx)
            // First occurrence of a new webhook id wins; later copies in the same batch are duplicates.
            var claimed = Set<String>()
            var fresh: [(index: Int, prediction: ReplicatePrediction)] = []
            var outcomes = [IntakeOutcome?](repeating: nil, count: deliveries.count)
            for (index, delivery) in deliveries.enumerated() {
                switch parsed[index] {
                case .failure(let error):
                    outcomes[index] = .unparseable(message: error.message)
                case .success(let prediction):
                    if inserted.contains(delivery.webhookID), claimed.insert(delivery.webhookID).inserted {
                        fresh.append((index, prediction))
                    } else {
                        outcomes[index] = .duplicate(predictionID: prediction.id)
                    }
                }
            }
            // One upsert statement cannot touch a row twice: a prediction that occurs twice in the batch goes
            // in a later round (rounds are rare: they need two events of one prediction at the same instant).
            var remaining = fresh
            var queuedAssets = 0
            while !remaining.isEmpty {
                var seen = Set<String>()
                var round: [(index: Int, prediction: ReplicatePrediction)] = []
                var later: [(index: Int, prediction: ReplicatePrediction)] = []
                for item in remaining {
                    if seen.insert(item.prediction.id).inserted { round.append(item) } else { later.append(item) }
                }
                let merged = try upsertPredictions(round.map(\.prediction), on: tx)
                var assets: [PendingAsset] = []
                var assetCounts: [String: Int] = [:]
                for item in round {
                    guard let state = merged[item.prediction.id] else { continue }
                    let found = state.outputURLs
                    assetCounts[item.prediction.id] = found.count
                    let deadline = (state.completedAt ?? deliveries[item.index].receivedAt).addingTimeInterval(retention)
                    for (n, url) in found.enumerated() {
                        assets.append(PendingAsset(predictionID: item.prediction.id, pointer: url.pointer, index: n,
                                                   sourceURL: url.url, deadline: deadline))
                    }
                }
                queuedAssets += try insertAssets(assets, on: tx)
                for item in round {
                    outcomes[item.index] = .accepted(predictionID: item.prediction.id, assets: assetCounts[item.prediction.id] ?? 0)
                }
                remaining = later
            }
            if queuedAssets > 0 {
                try tx.notify(Self.assetsChannel, payload: Self.provider)
            }
            return outcomes.map { $0! }
        }
    }

    /// Keeps a delivery that PostgreSQL refused to interpret (a value jsonb cannot hold, such as a `\u0000`
    /// escape): the raw body is stored with the reason, so nothing a provider sent is lost, and the answer is
    /// 400 rather than a 503 the provider would retry for ever.
    public func recordRejected(_ delivery: Delivery, reason: String, on connection: Connection) throws -> IntakeOutcome {
        try connection.transaction { tx in
            let parsed: [Result<ReplicatePrediction, ReplicatePrediction.ParseError>] = [.failure(.init(message: reason))]
            _ = try insertDeliveries([delivery], parsed: parsed, on: tx)
            return .unparseable(message: reason)
        }
    }

    /// Inserts the raw deliveries; returns the webhook ids that were new (the rest were recorded before).
    func insertDeliveries(_ deliveries: [Delivery], parsed: [Result<ReplicatePrediction, ReplicatePrediction.ParseError>],
                          on tx: Connection) throws -> Set<String> {
        var json = JSONWriter(capacity: deliveries.reduce(64) { $0 + $1.body.count * 4 / 3 + 160 })
        json.arrayStart()
        for (index, delivery) in deliveries.enumerated() {
            json.objectStart()
            json.field("webhook_id", delivery.webhookID)
            json.field("source", delivery.source)
            json.key("body"); json.raw("\"" + Data(delivery.body).base64EncodedString() + "\"")
            json.field("received_at", Self.microseconds(delivery.receivedAt))
            json.field("webhook_timestamp", delivery.timestamp.map(Self.microseconds))
            if case .failure(let error) = parsed[index] {
                json.field("outcome", "unparseable")
                json.field("error", error.message)
            } else {
                json.field("outcome", "accepted")
            }
            json.objectEnd()
        }
        json.arrayEnd()
        let rows = try tx.query(prepared: """
            INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
            SELECT $1, d.webhook_id, \(Self.timestamp("d.webhook_timestamp")), d.source, decode(d.body, 'base64'),
                   \(Self.timestamp("d.received_at")), d.outcome, d.error
            FROM jsonb_to_recordset($2::jsonb) AS d(webhook_id text, webhook_timestamp bigint, source text,
                                                    body text, received_at bigint, outcome text, error text)
            ON CONFLICT (provider, webhook_id) DO NOTHING
            RETURNING webhook_id
            """, [Self.provider, PQJSON(json.text)])
        return Set(try rows.map { try $0.decode(0, as: String.self) })
    }

    struct MergedPrediction {
        let status: String
        let outputJSON: String?
        let completedAt: Date?
        let dataRemoved: Bool

        /// The output files to archive: only once terminal, and never when the provider removed the data.
        var outputURLs: [OutputURLWalker.Found] {
            guard ReplicatePrediction.terminalStatuses.contains(status), !dataRemoved, let outputJSON else { return [] }
            let output = try? JSONSerialization.jsonObject(with: Data(outputJSON.utf8), options: [.fragmentsAllowed])
            return OutputURLWalker.urls(in: output)
        }
    }

    /// Upserts predictions so that a later event never moves one backwards; returns each merged row.
    func upsertPredictions(_ predictions: [ReplicatePrediction], on tx: Connection) throws -> [String: MergedPrediction] {
        // rank: starting 0 < processing 1 < terminal 2. The incoming event wins when it is further along,
        // or equally far but not terminal (a terminal status is never replaced, even by another one).
        let rank = { (column: String) in "(CASE \(column) WHEN 'starting' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END)" }
        let newer = "(\(rank("EXCLUDED.status")) > \(rank("predictions.status")) OR (\(rank("EXCLUDED.status")) = \(rank("predictions.status")) AND \(rank("predictions.status")) < 2))"
        func fill(_ column: String) -> String {
            "\(column) = CASE WHEN \(newer) THEN COALESCE(EXCLUDED.\(column), predictions.\(column)) ELSE COALESCE(predictions.\(column), EXCLUDED.\(column)) END"
        }
        var json = JSONWriter(capacity: 1024 * predictions.count)
        json.arrayStart()
        for p in predictions {
            json.objectStart()
            json.field("id", p.id)
            json.field("status", p.status)
            json.field("data_removed", p.dataRemoved)
            json.field("model", p.model)
            json.field("version", p.version)
            // input, output and metrics travel as JSON text (cast to jsonb in SQL), so they are strings here.
            json.field("input", p.inputJSON)
            json.field("output", p.outputJSON)
            json.field("error", p.error)
            json.field("metrics", p.metricsJSON)
            json.field("created_at", p.createdAt.map(Self.microseconds))
            json.field("started_at", p.startedAt.map(Self.microseconds))
            json.field("completed_at", p.completedAt.map(Self.microseconds))
            json.objectEnd()
        }
        json.arrayEnd()
        let rows = try tx.query(prepared: """
            INSERT INTO predictions AS predictions (provider, id, status, model, version, input, output, error, metrics,
                                                    created_at, started_at, completed_at, data_removed)
            SELECT $1, p.id, p.status, p.model, p.version, p.input::jsonb, p.output::jsonb, p.error, p.metrics::jsonb,
                   \(Self.timestamp("p.created_at")), \(Self.timestamp("p.started_at")), \(Self.timestamp("p.completed_at")), p.data_removed
            FROM jsonb_to_recordset($2::jsonb) AS p(id text, status text, model text, version text, input text, output text,
                                                    error text, metrics text, created_at bigint,
                                                    started_at bigint, completed_at bigint, data_removed boolean)
            ON CONFLICT (provider, id) DO UPDATE SET
                status = CASE WHEN \(newer) THEN EXCLUDED.status ELSE predictions.status END,
                \(["model", "version", "input", "output", "error", "metrics", "created_at", "started_at", "completed_at"].map(fill).joined(separator: ",\n    "))
                , data_removed = predictions.data_removed OR EXCLUDED.data_removed
                , updated_at = now()
            RETURNING id, status, output::text, completed_at, data_removed
            """, [Self.provider, PQJSON(json.text)])
        var merged: [String: MergedPrediction] = [:]
        for row in rows {
            merged[try row.decode(0, as: String.self)] = MergedPrediction(
                status: try row.decode(1), outputJSON: try row.decode(2), completedAt: try row.decode(3), dataRemoved: try row.decode(4))
        }
        return merged
    }

    struct PendingAsset {
        let predictionID: String
        let pointer: String
        let index: Int
        let sourceURL: String
        let deadline: Date
    }

    /// Queues one asset per output URL (unique per prediction and JSON pointer); returns how many are new.
    func insertAssets(_ assets: [PendingAsset], on tx: Connection) throws -> Int {
        guard !assets.isEmpty else { return 0 }
        var json = JSONWriter(capacity: 256 * assets.count)
        json.arrayStart()
        for asset in assets {
            json.objectStart()
            json.field("prediction_id", asset.predictionID)
            json.field("pointer", asset.pointer)
            json.field("output_index", asset.index)
            json.field("source_url", asset.sourceURL)
            json.field("deadline", Self.microseconds(asset.deadline))
            json.objectEnd()
        }
        json.arrayEnd()
        return try tx.query(prepared: """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline)
            SELECT $1, a.prediction_id, a.pointer, a.output_index, a.source_url, \(Self.timestamp("a.deadline"))
            FROM jsonb_to_recordset($2::jsonb) AS a(prediction_id text, pointer text, output_index int, source_url text,
                                                    deadline bigint)
            ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
            """, [Self.provider, PQJSON(json.text)]).rowsAffected
    }

    /// Instants travel as whole microseconds since the Unix epoch: exact, unlike a Double of seconds.
    static func microseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
    static func timestamp(_ column: String) -> String { "(timestamptz 'epoch' + \(column) * interval '1 microsecond')" }
}

extension JSONWriter {
    /// The document as a String, for a `PQJSON` parameter.
    var text: String { String(decoding: bytes, as: UTF8.self) }
}
