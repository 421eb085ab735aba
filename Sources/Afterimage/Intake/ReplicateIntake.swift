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
/// a fixed handful of statements whatever its size — each statement takes the batch as one binary array
/// per column (`PQArray`) expanded by `unnest`, so neither side encodes or parses JSON or base64 for the
/// batch itself; only input, output and metrics are parsed, once, into jsonb. A batch of one is the plain case.
public struct ReplicateIntake: Sendable {
    public static let provider = "replicate"
    /// Channel the workers LISTEN on; a notification means "new pending assets".
    public static let assetsChannel = "afterimage_assets"

    let retention: TimeInterval
    /// Where data: outputs are decoded before a delivery is recorded (`spoolingDataOutputs`); the intake
    /// removes the files no asset took. Nil: data: outputs are decoded by the workers from the delivery.
    let spool: Spool?

    public init(retentionSeconds: Int, spool: Spool? = nil) {
        retention = TimeInterval(retentionSeconds)
        self.spool = spool
    }

    public struct Delivery: Sendable {
        public var webhookID: String
        public var timestamp: Date?
        public var body: [UInt8]
        /// `webhook` or `reconcile`.
        public var source: String
        public var receivedAt: Date
        /// The data: outputs decoded into the spool before recording, by JSON pointer (`spoolingDataOutputs`).
        var dataOutputs: [String: SpooledDataOutput] = [:]

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
    ///
    /// `expectingDuplicates: false` inserts deliveries and assets without ON CONFLICT: cheaper, but a webhook id
    /// or output recorded before then fails the whole transaction with unique_violation (23505), and the
    /// caller must record the batch again with the default.
    public func recordBatch(_ deliveries: [Delivery], expectingDuplicates: Bool = true, on connection: Connection) throws -> [IntakeOutcome] {
        guard !deliveries.isEmpty else { return [] }
        let parsed = deliveries.map { delivery -> Result<ReplicatePrediction, ReplicatePrediction.ParseError> in
            do throws(ReplicatePrediction.ParseError) {
                return .success(try ReplicatePrediction.parse(delivery.body))
            } catch {
                return .failure(error)
            }
        }
        var usedSpoolFiles = Set<String>()
        let outcomes = try connection.transaction { tx in
            let inserted = try insertDeliveries(deliveries, parsed: parsed, checking: expectingDuplicates, on: tx)
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
            var queuedFor = Set<String>()
            while !remaining.isEmpty {
                var seen = Set<String>()
                var round: [(index: Int, prediction: ReplicatePrediction)] = []
                var later: [(index: Int, prediction: ReplicatePrediction)] = []
                for item in remaining {
                    if seen.insert(item.prediction.id).inserted { round.append(item) } else { later.append(item) }
                }
                let merged = try upsertPredictions(round.map(\.prediction), on: tx)
                var assets: [PendingAsset] = []
                var dataAssets: [DataAsset] = []
                var assetCounts: [String: Int] = [:]
                for item in round {
                    guard let state = merged[item.prediction.id] else { continue }
                    // A prediction this event created is this event: its outputs were found when it was parsed.
                    let found = state.inserted ? item.prediction.outputs : state.outputs
                    let completedAt = state.inserted ? item.prediction.completedAt : state.completedAt
                    assetCounts[item.prediction.id] = found.count
                    let deadline = (completedAt ?? deliveries[item.index].receivedAt).addingTimeInterval(retention)
                    let delivery = deliveries[item.index]
                    for (n, output) in found.enumerated() {
                        if output.isData {
                            // Matched by pointer with what was decoded from this delivery's body; with nothing
                            // decoded, the workers decode it from the recorded delivery.
                            dataAssets.append(DataAsset(predictionID: item.prediction.id, pointer: output.pointer, index: n,
                                                        header: output.url, webhookID: delivery.webhookID,
                                                        decoded: delivery.dataOutputs[output.pointer]))
                        } else {
                            assets.append(PendingAsset(predictionID: item.prediction.id, pointer: output.pointer, index: n,
                                                       sourceURL: output.url, deadline: deadline))
                        }
                    }
                }
                queuedFor.formUnion(try insertAssets(assets, checking: expectingDuplicates, on: tx))
                let (withDataAssets, spoolFiles) = try insertDataAssets(dataAssets, on: tx)
                queuedFor.formUnion(withDataAssets)
                usedSpoolFiles.formUnion(spoolFiles)
                for item in round {
                    outcomes[item.index] = .accepted(predictionID: item.prediction.id, assets: assetCounts[item.prediction.id] ?? 0)
                }
                remaining = later
            }
            if !queuedFor.isEmpty {
                let payloads = try PQArray<String>(Self.notificationPayloads(for: queuedFor).map { Optional($0) })
                try tx.query(prepared: Self.notifySQL, [Self.assetsChannel, payloads])
            }
            return outcomes.map { $0! }
        }
        removeSpoolFiles(of: deliveries, except: usedSpoolFiles)
        return outcomes
    }

    /// Keeps a delivery that PostgreSQL refused to interpret (a value jsonb cannot hold, such as a `\u0000`
    /// escape): the raw body is stored with the reason, so nothing a provider sent is lost, and the answer is
    /// 400 rather than a 503 the provider would retry for ever.
    public func recordRejected(_ delivery: Delivery, reason: String, on connection: Connection) throws -> IntakeOutcome {
        let outcome = try connection.transaction { tx in
            let parsed: [Result<ReplicatePrediction, ReplicatePrediction.ParseError>] = [.failure(.init(message: reason))]
            _ = try insertDeliveries([delivery], parsed: parsed, on: tx)
            return IntakeOutcome.unparseable(message: reason)
        }
        removeSpoolFiles(of: [delivery], except: [])
        return outcome
    }

    /// Bodies from this size on are recorded one by one with COPY (`DeliveryRecord`), streamed in pieces from
    /// the body's own storage: in the batch's array parameter they would be copied first, and as a bound
    /// parameter libpq would copy them whole into its send buffer. A 16 MiB log-heavy body thus exists once
    /// in this process while it is recorded (the request's own buffer, which the HTTP body budget counts).
    static let separateBodyBytes = 256 * 1024

    /// Inserts the raw deliveries; returns the webhook ids that were new (the rest were recorded before).
    func insertDeliveries(_ deliveries: [Delivery], parsed: [Result<ReplicatePrediction, ReplicatePrediction.ParseError>],
                          checking: Bool = true, on tx: Connection) throws -> Set<String> {
        var large: [(Delivery, String?)] = []
        var small: [Delivery] = []
        var smallErrors: [String?] = []
        for (index, delivery) in deliveries.enumerated() {
            let error: String?
            if case .failure(let failure) = parsed[index] { error = failure.message } else { error = nil }
            if delivery.body.count >= Self.separateBodyBytes { large.append((delivery, error)) } else { small.append(delivery); smallErrors.append(error) }
        }
        var inserted = try insertSmallDeliveries(small, errors: smallErrors, checking: checking, on: tx)
        for (delivery, error) in large {
            // COPY has no ON CONFLICT: the checking pass looks first. (A copy of this delivery committed
            // meanwhile still fails the batch with unique_violation; it is then recorded again, and found.)
            if checking, !(try tx.query(prepared: Self.deliveryExistsSQL, [Self.provider, delivery.webhookID])).isEmpty { continue }
            _ = try DeliveryRecord(provider: Self.provider, webhookID: delivery.webhookID, timestamp: delivery.timestamp,
                                   source: delivery.source, receivedAt: delivery.receivedAt,
                                   outcome: error == nil ? "accepted" : "unparseable", error: error)
                .insert(body: .bytes(delivery.body), on: tx)
            inserted.insert(delivery.webhookID)
        }
        return inserted
    }

    /// The deliveries of ordinary size, in one statement with one array per column.
    func insertSmallDeliveries(_ deliveries: [Delivery], errors: [String?], checking: Bool, on tx: Connection) throws -> Set<String> {
        guard !deliveries.isEmpty else { return [] }
        var webhookIDs = PQArray<String>(capacity: 48 * deliveries.count)
        var timestamps = PQArray<Int64>(capacity: 12 * deliveries.count)
        var sources = PQArray<String>(capacity: 12 * deliveries.count)
        var bodies = PQArray<[UInt8]>(capacity: deliveries.reduce(0) { $0 + $1.body.count + 4 })
        var receivedAt = PQArray<Int64>(capacity: 12 * deliveries.count)
        var outcomes = PQArray<String>(capacity: 16 * deliveries.count)
        var errorTexts = PQArray<String>(capacity: 4 * deliveries.count)
        for (index, delivery) in deliveries.enumerated() {
            try webhookIDs.append(delivery.webhookID)
            try timestamps.append(delivery.timestamp.map(Self.microseconds))
            try sources.append(delivery.source)
            try bodies.append(delivery.body)
            try receivedAt.append(Self.microseconds(delivery.receivedAt))
            try outcomes.append(errors[index] == nil ? "accepted" : "unparseable")
            try errorTexts.append(errors[index])
        }
        let parameters: [any PQEncodable] = [Self.provider, webhookIDs, timestamps, sources, bodies, receivedAt, outcomes, errorTexts]
        guard checking else {
            // Every row went in, or the statement failed with unique_violation.
            try tx.query(prepared: Self.insertNewDeliveriesSQL, parameters)
            return Set(deliveries.map(\.webhookID))
        }
        let rows = try tx.query(prepared: Self.insertDeliveriesSQL, parameters)
        return Set(try rows.map { try $0.decode(0, as: String.self) })
    }

    struct MergedPrediction {
        /// True when this statement created the row, which is then exactly the incoming event; only the
        /// other fields of an updated row are read back (an inserted one comes back with nothing else).
        let inserted: Bool
        let status: String
        let outputJSON: String?
        let completedAt: Date?
        let dataRemoved: Bool

        /// The output files to archive: only once terminal, and never when the provider removed the data.
        var outputs: [OutputURLWalker.Found] {
            guard ReplicatePrediction.terminalStatuses.contains(status), !dataRemoved, let outputJSON else { return [] }
            return OutputURLWalker.urls(inJSON: outputJSON)
        }
    }

    /// Upserts predictions so that a later event never moves one backwards; returns each merged row.
    func upsertPredictions(_ predictions: [ReplicatePrediction], on tx: Connection) throws -> [String: MergedPrediction] {
        let count = predictions.count
        var ids = PQArray<String>(capacity: 32 * count), statuses = PQArray<String>(capacity: 16 * count)
        var models = PQArray<String>(capacity: 32 * count), versions = PQArray<String>(capacity: 72 * count)
        var inputs = PQArray<String>(capacity: 256 * count), outputs = PQArray<String>(capacity: 128 * count)
        var errors = PQArray<String>(capacity: 4 * count), metrics = PQArray<String>(capacity: 64 * count)
        var createdAt = PQArray<Int64>(capacity: 12 * count), startedAt = PQArray<Int64>(capacity: 12 * count)
        var completedAt = PQArray<Int64>(capacity: 12 * count), dataRemoved = PQArray<Bool>(capacity: 5 * count)
        var sources = PQArray<String>(capacity: 8 * count), deployments = PQArray<String>(capacity: 4 * count)
        var deadlines = PQArray<Int64>(capacity: 12 * count)
        for p in predictions {
            try ids.append(p.id); try statuses.append(p.status)
            try models.append(p.model); try versions.append(p.version)
            // input, output and metrics travel as the provider's JSON text, parsed once by the ::jsonb casts.
            try inputs.append(p.inputJSON); try outputs.append(p.outputJSON)
            try errors.append(p.error); try metrics.append(p.metricsJSON)
            try createdAt.append(p.createdAt.map(Self.microseconds)); try startedAt.append(p.startedAt.map(Self.microseconds))
            try completedAt.append(p.completedAt.map(Self.microseconds)); try dataRemoved.append(p.dataRemoved)
            try sources.append(p.source); try deployments.append(p.deployment); try deadlines.append(p.deadline.map(Self.microseconds))
        }
        let rows = try tx.query(prepared: Self.upsertPredictionsSQL,
                                [Self.provider, ids, statuses, models, versions, inputs, outputs, errors, metrics,
                                 createdAt, startedAt, completedAt, dataRemoved, sources, deployments, deadlines])
        // xmax is 0 on a row version this statement inserted, and set (to our own transaction) on one the
        // ON CONFLICT branch updated.
        var merged: [String: MergedPrediction] = [:]
        merged.reserveCapacity(rows.count)
        for row in rows {
            let id = try row.decode(0, as: String.self)
            if try row.decode(1, as: Bool.self) {
                merged[id] = MergedPrediction(inserted: true, status: "", outputJSON: nil, completedAt: nil, dataRemoved: false)
            } else {
                merged[id] = MergedPrediction(inserted: false, status: try row.decode(2), outputJSON: try row.decode(3),
                                              completedAt: try row.decode(4), dataRemoved: try row.decode(5))
            }
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

    /// Queues one asset per output URL (unique per prediction and JSON pointer); returns the predictions
    /// that got a new one.
    func insertAssets(_ assets: [PendingAsset], checking: Bool = true, on tx: Connection) throws -> Set<String> {
        guard !assets.isEmpty else { return [] }
        var predictionIDs = PQArray<String>(capacity: 32 * assets.count), pointers = PQArray<String>(capacity: 16 * assets.count)
        var indexes = PQArray<Int32>(capacity: 8 * assets.count), urls = PQArray<String>(capacity: 128 * assets.count)
        var deadlines = PQArray<Int64>(capacity: 12 * assets.count)
        for asset in assets {
            try predictionIDs.append(asset.predictionID); try pointers.append(asset.pointer)
            try indexes.append(Int32(clamping: asset.index)); try urls.append(asset.sourceURL)
            try deadlines.append(Self.microseconds(asset.deadline))
        }
        let parameters: [any PQEncodable] = [Self.provider, predictionIDs, pointers, indexes, urls, deadlines]
        guard checking else {
            try tx.query(prepared: Self.insertNewAssetsSQL, parameters)
            return Set(assets.map(\.predictionID))
        }
        let rows = try tx.query(prepared: Self.insertAssetsSQL, parameters)
        return Set(try rows.map { try $0.decode(0, as: String.self) })
    }

    // The statements, built once: fixed SQL, so each pooled connection prepares each of them once.
    static let insertNewDeliveriesSQL = """
            INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
            SELECT $1, d.webhook_id, \(Self.timestamp("d.webhook_timestamp")), d.source, d.body,
                   \(Self.timestamp("d.received_at")), d.outcome, d.error
            FROM unnest($2::text[], $3::int8[], $4::text[], $5::bytea[], $6::int8[], $7::text[], $8::text[])
                 AS d(webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
            """
    static let insertDeliveriesSQL = insertNewDeliveriesSQL + """

            ON CONFLICT (provider, webhook_id) DO NOTHING
            RETURNING webhook_id
            """
    /// Whether a large delivery (see `separateBodyBytes`) is recorded already.
    static let deliveryExistsSQL = "SELECT 1 FROM deliveries WHERE provider = $1 AND webhook_id = $2"

    static let upsertPredictionsSQL: String = {
        // rank: starting 0 < processing 1 < terminal 2. The incoming event wins when it is further along,
        // or equally far but not terminal (a terminal status is never replaced, even by another one).
        let rank = { (column: String) in "(CASE \(column) WHEN 'starting' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END)" }
        let newer = "(\(rank("EXCLUDED.status")) > \(rank("predictions.status")) OR (\(rank("EXCLUDED.status")) = \(rank("predictions.status")) AND \(rank("predictions.status")) < 2))"
        func fill(_ column: String) -> String {
            "\(column) = CASE WHEN \(newer) THEN COALESCE(EXCLUDED.\(column), predictions.\(column)) ELSE COALESCE(predictions.\(column), EXCLUDED.\(column)) END"
        }
        return """
            INSERT INTO predictions AS predictions (provider, id, status, model, version, input, output, error, metrics,
                                                    created_at, started_at, completed_at, data_removed, source, deployment, deadline)
            SELECT $1, p.id, p.status, p.model, p.version, p.input::jsonb, p.output::jsonb, p.error, p.metrics::jsonb,
                   \(Self.timestamp("p.created_at")), \(Self.timestamp("p.started_at")), \(Self.timestamp("p.completed_at")), p.data_removed,
                   p.source, p.deployment, \(Self.timestamp("p.deadline"))
            FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                        $10::int8[], $11::int8[], $12::int8[], $13::bool[], $14::text[], $15::text[], $16::int8[])
                 AS p(id, status, model, version, input, output, error, metrics, created_at, started_at, completed_at, data_removed,
                      source, deployment, deadline)
            ON CONFLICT (provider, id) DO UPDATE SET
                status = CASE WHEN \(newer) THEN EXCLUDED.status ELSE predictions.status END,
                \(["model", "version", "input", "output", "error", "metrics", "created_at", "started_at", "completed_at",
                   "source", "deployment", "deadline"].map(fill).joined(separator: ",\n    "))
                , data_removed = predictions.data_removed OR EXCLUDED.data_removed
                , updated_at = now()
            RETURNING id, xmax = 0,
                      CASE WHEN xmax <> 0 THEN status END, CASE WHEN xmax <> 0 THEN output::text END,
                      CASE WHEN xmax <> 0 THEN completed_at END, CASE WHEN xmax <> 0 THEN data_removed END
            """
    }()

    static let insertNewAssetsSQL = """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline)
            SELECT $1, a.prediction_id, a.pointer, a.output_index, a.source_url, \(Self.timestamp("a.deadline"))
            FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[], $6::int8[])
                 AS a(prediction_id, pointer, output_index, source_url, deadline)
            """
    static let insertAssetsSQL = insertNewAssetsSQL + """

            ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
            RETURNING prediction_id
            """

    static let notifySQL = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"

    /// Tells every instance's lookup cache to forget all it holds (see `notificationPayloads`).
    public static let invalidateEverythingPayload = "*"
    /// PostgreSQL refuses payloads of 8000 bytes or more.
    static let maxPayloadBytes = 7900

    /// The notifications for predictions that got new assets: workers wake on any, and every instance's
    /// lookup cache forgets the predictions named, one `replicate/<id>` per line. Usually one per batch
    /// (a notification per prediction cost PostgreSQL and each listener a queue entry and a wake-up per
    /// webhook). An id with a line break in it cannot be listed, so it turns into `*`.
    static func notificationPayloads(for ids: Set<String>) -> [String] {
        var payloads: [String] = []
        var current = ""
        var everything = false
        for id in ids.sorted() {
            if id.utf8.contains(UInt8(ascii: "\n")) { everything = true; continue }
            let line = provider + "/" + id
            if !current.isEmpty, current.utf8.count + 1 + line.utf8.count > maxPayloadBytes {
                payloads.append(current)
                current = ""
            }
            current += current.isEmpty ? line : "\n" + line
        }
        if !current.isEmpty { payloads.append(current) }
        if everything { payloads.append(invalidateEverythingPayload) }
        return payloads
    }

    /// Instants travel as whole microseconds since the Unix epoch: exact, unlike a Double of seconds.
    static func microseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
    static func timestamp(_ column: String) -> String { "(timestamptz 'epoch' + \(column) * interval '1 microsecond')" }
}
