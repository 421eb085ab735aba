import Foundation
import PQ

/// Records deliveries of any provider: the raw body, the prediction (monotonic status, fields only fill
/// in) and one asset per output, in one transaction, so a 2xx means all of it is durable. What a body
/// means is the provider's (`IntakeProvider.interpret`); how it is kept is the same for every provider.
///
/// Works on batches: concurrent webhooks are committed together (see `IntakeBatcher`), and a batch costs
/// a fixed handful of statements per provider in it, whatever its size — each statement takes the batch as
/// one binary array per column (`PQArray`) expanded by `unnest`, so neither side encodes or parses JSON or
/// base64 for the batch itself; only input, output and metrics are parsed, once, into jsonb. A batch of
/// one is the plain case.
///
/// Outputs are numbered per prediction (`output_index`, the `n` of the object key, unique with the
/// provider and prediction id): a prediction's first outputs in the provider's walk order, and an output
/// found by a later delivery takes the next free number, so two assets never share a key.
public struct DeliveryRecorder: Sendable {
    let providers: [ProviderName: any IntakeProvider]
    /// Where inline outputs wait; the files no asset took are removed after the commit. Nil when this
    /// process records without a spool (the workers then decode inline outputs from the recorded delivery).
    let spool: Spool?

    public init(providers: [any IntakeProvider], spool: Spool? = nil) {
        self.providers = Dictionary(providers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.spool = spool
    }

    /// A delivery, and what it means when the route has interpreted it already (one that decoded inline
    /// content first); nil: the recorder asks the provider.
    public struct Item: Sendable {
        public var delivery: WebhookDelivery
        public var interpretation: Result<Interpretation, UnreadableDelivery>?

        public init(_ delivery: WebhookDelivery, interpretation: Result<Interpretation, UnreadableDelivery>? = nil) {
            self.delivery = delivery
            self.interpretation = interpretation
        }
    }

    /// Records one delivery on `connection` inside its own transaction.
    public func record(_ delivery: WebhookDelivery, on connection: Connection) throws -> IntakeOutcome {
        try recordBatch([delivery], on: connection)[0]
    }

    /// Records several deliveries in one transaction; outcomes come back in the same order.
    ///
    /// `expectingDuplicates: false` inserts deliveries and plain URL assets without ON CONFLICT: cheaper, but
    /// a delivery or output recorded before then fails the whole transaction with unique_violation, and
    /// the caller must record the batch again with the default.
    public func recordBatch(_ deliveries: [WebhookDelivery], expectingDuplicates: Bool = true, on connection: Connection) throws -> [IntakeOutcome] {
        try record(deliveries.map { Item($0) }, expectingDuplicates: expectingDuplicates, on: connection)
    }

    /// The same for items, some already interpreted.
    public func record(_ items: [Item], expectingDuplicates: Bool = true, on connection: Connection) throws -> [IntakeOutcome] {
        guard !items.isEmpty else { return [] }
        var used = Set<String>()
        let outcomes = try connection.transaction { tx in
            let (outcomes, usedFiles) = try record(items, expectingDuplicates: expectingDuplicates, in: tx)
            used = usedFiles
            return outcomes
        }
        removeSpoolFiles(of: items.map(\.delivery), except: used)
        return outcomes
    }

    /// Inside the caller's transaction (which must commit before anything is acknowledged). Returns the
    /// outcomes and the spool files the new assets took; the caller removes the others after COMMIT.
    func record(_ items: [Item], expectingDuplicates: Bool, in tx: Connection) throws -> ([IntakeOutcome], Set<String>) {
        var outcomes = [IntakeOutcome?](repeating: nil, count: items.count)
        var queued = Set<AssetNotifications.Prediction>()
        var usedFiles = Set<String>()
        // One set of statements per provider in the batch (a mixed batch is rare: routes differ per provider).
        var order: [ProviderName] = []
        var groups: [ProviderName: [Int]] = [:]
        for (index, item) in items.enumerated() {
            if groups[item.delivery.provider] == nil { order.append(item.delivery.provider) }
            groups[item.delivery.provider, default: []].append(index)
        }
        for name in order {
            let indexes = groups[name]!
            guard let provider = providers[name] else { throw UnknownProvider(name: name) }
            let group = indexes.map { items[$0] }
            let recorded = try record(group, of: provider, checking: expectingDuplicates, in: tx)
            for (slot, outcome) in zip(indexes, recorded.outcomes) { outcomes[slot] = outcome }
            queued.formUnion(recorded.queued.map { AssetNotifications.Prediction(provider: name, id: $0) })
            usedFiles.formUnion(recorded.usedFiles)
        }
        try AssetNotifications.send(for: queued, on: tx)
        return (outcomes.map { $0! }, usedFiles)
    }

    /// A delivery for a provider intake was not given: a programming error, reported rather than trapped.
    struct UnknownProvider: Error, CustomStringConvertible {
        let name: ProviderName
        var description: String { "no provider \(name) is registered with intake" }
    }

    private struct GroupResult {
        var outcomes: [IntakeOutcome]
        /// Predictions that got a new asset (announced after the batch).
        var queued: Set<String>
        var usedFiles: Set<String>
    }

    /// One provider's deliveries: deliveries, predictions (in rounds: one upsert cannot touch a row twice),
    /// assets.
    private func record(_ items: [Item], of provider: any IntakeProvider, checking: Bool, in tx: Connection) throws -> GroupResult {
        let interpreted = items.map { item -> Result<Interpretation, UnreadableDelivery> in
            if let given = item.interpretation { return given }
            do throws(UnreadableDelivery) {
                return .success(try provider.interpret(item.delivery))
            } catch {
                return .failure(error)
            }
        }
        let deliveries = items.map(\.delivery)
        let inserted = try insertDeliveries(
            deliveries, provider: provider.name,
            errors: interpreted.map { if case .failure(let e) = $0 { e.message } else { nil } },
            checking: checking, on: tx)
        // First occurrence of a new delivery id wins; later copies in the same batch are duplicates.
        var claimed = Set<String>()
        var fresh: [(index: Int, interpretation: Interpretation)] = []
        var outcomes = [IntakeOutcome?](repeating: nil, count: items.count)
        for (index, delivery) in deliveries.enumerated() {
            switch interpreted[index] {
            case .failure(let error):
                outcomes[index] = .unparseable(message: error.message)
            case .success(let interpretation):
                if inserted.contains(delivery.deliveryID), claimed.insert(delivery.deliveryID).inserted {
                    fresh.append((index, interpretation))
                } else {
                    outcomes[index] = .duplicate(predictionID: interpretation.prediction.id)
                }
            }
        }
        var result = GroupResult(outcomes: [], queued: [], usedFiles: [])
        var remaining = fresh
        while !remaining.isEmpty {
            var seen = Set<String>()
            var round: [(index: Int, interpretation: Interpretation)] = []
            var later: [(index: Int, interpretation: Interpretation)] = []
            for item in remaining {
                if seen.insert(item.interpretation.prediction.id).inserted { round.append(item) } else { later.append(item) }
            }
            let merged = try upsertPredictions(round.map(\.interpretation.prediction), provider: provider.name, on: tx)
            var wanted: [(index: Int, predictionID: String, specs: [AssetSpec], isNew: Bool)] = []
            for item in round {
                let id = item.interpretation.prediction.id
                guard let state = merged[id] else { continue }
                let specs = provider.assets(
                    for: item.interpretation, merged: state.inserted ? nil : state.merged,
                    delivery: deliveries[item.index])
                wanted.append((item.index, id, specs, state.inserted))
                outcomes[item.index] = .accepted(predictionID: id, assets: specs.count)
            }
            let existing = try existingAssets(
                of: wanted.filter { !$0.isNew && !$0.specs.isEmpty }.map(\.predictionID),
                provider: provider.name, on: tx)
            var plain: [PlannedAsset] = []
            var general: [PlannedAsset] = []
            for want in wanted {
                for planned in Self.plan(
                    want.specs, predictionID: want.predictionID, existing: existing[want.predictionID] ?? [:],
                    deliveryID: deliveries[want.index].deliveryID)
                {
                    if planned.spec.isPlainURL && !planned.qualified { plain.append(planned) } else { general.append(planned) }
                }
            }
            result.queued.formUnion(try insertPlainAssets(plain, provider: provider.name, checking: checking, on: tx))
            let (withGeneral, files) = try insertGeneralAssets(general, provider: provider.name, on: tx)
            result.queued.formUnion(withGeneral)
            result.usedFiles.formUnion(files)
            remaining = later
        }
        result.outcomes = outcomes.map { $0! }
        return result
    }

    /// Keeps a delivery that PostgreSQL refused to interpret (a value jsonb cannot hold, such as a `\u0000`
    /// escape): the raw body is stored with the reason, so nothing a provider sent is lost, and the answer is
    /// 400 rather than a 503 the provider would retry for ever.
    public func recordRejected(_ delivery: WebhookDelivery, reason: String, on connection: Connection) throws -> IntakeOutcome {
        let outcome = try connection.transaction { tx in
            _ = try insertDeliveries([delivery], provider: delivery.provider, errors: [reason], checking: true, on: tx)
            return IntakeOutcome.unparseable(message: reason)
        }
        removeSpoolFiles(of: [delivery], except: [])
        return outcome
    }

    /// The prediction a recorded delivery belongs to ("" when it was not understood); nil when it is new.
    /// Lets a route that decodes large inline content answer a retried delivery without decoding it again.
    public func knownDelivery(_ deliveryID: String, provider: ProviderName, on connection: Connection) throws -> String? {
        guard
            let row = try connection.query(
                """
                SELECT (SELECT a.prediction_id FROM assets a WHERE a.delivery_id = d.id LIMIT 1)
                FROM deliveries d WHERE d.provider = $1 AND d.webhook_id = $2
                """, [provider, deliveryID]
            ).first
        else { return nil }
        return try row.decode(0, as: String?.self) ?? ""
    }

    /// Removes the delivery's decoded files; for a delivery that was not recorded (its sender retries, or a
    /// commit whose outcome is unknown: the workers then decode the outputs from the recorded delivery).
    public func removeSpoolFiles(of delivery: WebhookDelivery) {
        removeSpoolFiles(of: [delivery], except: [])
    }

    /// After a commit: the decoded files that no asset took (a duplicate delivery, outputs already recorded).
    func removeSpoolFiles(of deliveries: [WebhookDelivery], except used: Set<String>) {
        guard let spool else { return }
        for delivery in deliveries {
            for file in delivery.spooledFiles {
                // A file a committed row took is the sweep's to judge from now on (its claim ends); the rest go.
                if used.contains(file.path) { spool.release(file.path) } else { spool.remove(file.path) }
            }
        }
    }

    // MARK: Deliveries

    /// Bodies from this size on are recorded one by one with COPY (`DeliveryRecord`), streamed in pieces from
    /// the body's own storage (memory or its spill file): in the batch's array parameter they would be copied
    /// first, and as a bound parameter libpq would copy them whole into its send buffer. A 16 MiB log-heavy
    /// body thus exists once in this process while it is recorded (the request's own buffer, which the HTTP
    /// body budget counts), and a body handed over as a file not at all.
    static let separateBodyBytes = 256 * 1024

    /// Inserts the raw deliveries (`errors[i]` non-nil: kept as unparseable); returns the delivery ids that
    /// were new (the rest were recorded before).
    func insertDeliveries(
        _ deliveries: [WebhookDelivery], provider: ProviderName, errors: [String?],
        checking: Bool = true, on tx: Connection
    ) throws -> Set<String> {
        var large: [(WebhookDelivery, String?)] = []
        var small: [WebhookDelivery] = []
        var smallErrors: [String?] = []
        for (index, delivery) in deliveries.enumerated() {
            if delivery.bodyFile != nil || delivery.body.count >= Self.separateBodyBytes {
                large.append((delivery, errors[index]))
            } else {
                small.append(delivery)
                smallErrors.append(errors[index])
            }
        }
        var inserted = try insertSmallDeliveries(small, provider: provider, errors: smallErrors, checking: checking, on: tx)
        for (delivery, error) in large {
            // COPY has no ON CONFLICT: the checking pass looks first. (A copy of this delivery committed
            // meanwhile still fails the transaction with unique_violation: `isDuplicateDelivery`.)
            if checking, !(try tx.query(prepared: Self.deliveryExistsSQL, [provider, delivery.deliveryID])).isEmpty { continue }
            _ = try DeliveryRecord(
                provider: provider.rawValue, webhookID: delivery.deliveryID, timestamp: delivery.timestamp,
                source: delivery.source.rawValue, receivedAt: delivery.receivedAt,
                outcome: error == nil ? "accepted" : "unparseable", error: error
            )
            .insert(body: delivery.rawBody, on: tx)
            inserted.insert(delivery.deliveryID)
        }
        return inserted
    }

    /// The deliveries of ordinary size, in one statement with one array per column.
    private func insertSmallDeliveries(
        _ deliveries: [WebhookDelivery], provider: ProviderName, errors: [String?], checking: Bool,
        on tx: Connection
    ) throws -> Set<String> {
        guard !deliveries.isEmpty else { return [] }
        var ids = PQArray<String>(capacity: 48 * deliveries.count)
        var timestamps = PQArray<Int64>(capacity: 12 * deliveries.count)
        var sources = PQArray<String>(capacity: 12 * deliveries.count)
        var bodies = PQArray<[UInt8]>(capacity: deliveries.reduce(0) { $0 + $1.body.count + 4 })
        var receivedAt = PQArray<Int64>(capacity: 12 * deliveries.count)
        var outcomes = PQArray<String>(capacity: 16 * deliveries.count)
        var errorTexts = PQArray<String>(capacity: 4 * deliveries.count)
        for (index, delivery) in deliveries.enumerated() {
            try ids.append(delivery.deliveryID)
            try timestamps.append(delivery.timestamp.map(Self.microseconds))
            try sources.append(delivery.source.rawValue)
            try bodies.append(delivery.body)
            try receivedAt.append(Self.microseconds(delivery.receivedAt))
            try outcomes.append(errors[index] == nil ? "accepted" : "unparseable")
            try errorTexts.append(errors[index])
        }
        let parameters: [any PQEncodable] = [provider, ids, timestamps, sources, bodies, receivedAt, outcomes, errorTexts]
        guard checking else {
            // Every row went in, or the statement failed with unique_violation.
            try tx.query(prepared: Self.insertNewDeliveriesSQL, parameters)
            return Set(deliveries.map(\.deliveryID))
        }
        let rows = try tx.query(prepared: Self.insertDeliveriesSQL, parameters)
        return Set(try rows.map { try $0.decode(0, as: String.self) })
    }

    // MARK: Predictions

    /// A merged prediction row: `inserted` when this statement created it (it is then exactly the incoming
    /// record, and nothing else is read back).
    struct MergeState {
        let inserted: Bool
        let merged: MergedPrediction
    }

    /// Upserts predictions so that a later event never moves one backwards; returns each merged row.
    func upsertPredictions(_ predictions: [PredictionRecord], provider: ProviderName, on tx: Connection) throws -> [String: MergeState] {
        let count = predictions.count
        var ids = PQArray<String>(capacity: 32 * count)
        var statuses = PQArray<String>(capacity: 16 * count)
        var models = PQArray<String>(capacity: 32 * count)
        var versions = PQArray<String>(capacity: 72 * count)
        var inputs = PQArray<String>(capacity: 256 * count)
        var outputs = PQArray<String>(capacity: 128 * count)
        var errors = PQArray<String>(capacity: 4 * count)
        var metrics = PQArray<String>(capacity: 64 * count)
        var createdAt = PQArray<Int64>(capacity: 12 * count)
        var startedAt = PQArray<Int64>(capacity: 12 * count)
        var completedAt = PQArray<Int64>(capacity: 12 * count)
        var dataRemoved = PQArray<Bool>(capacity: 5 * count)
        var sources = PQArray<String>(capacity: 8 * count)
        var deployments = PQArray<String>(capacity: 4 * count)
        var deadlines = PQArray<Int64>(capacity: 12 * count)
        for p in predictions {
            try ids.append(p.id)
            try statuses.append(p.status.rawValue)
            try models.append(p.model)
            try versions.append(p.version)
            // input, output and metrics travel as the provider's JSON text, parsed once by the ::jsonb casts.
            try inputs.append(p.inputJSON)
            try outputs.append(p.outputJSON)
            try errors.append(p.error)
            try metrics.append(p.metricsJSON)
            try createdAt.append(p.createdAt.map(Self.microseconds))
            try startedAt.append(p.startedAt.map(Self.microseconds))
            try completedAt.append(p.completedAt.map(Self.microseconds))
            try dataRemoved.append(p.dataRemoved)
            try sources.append(p.source)
            try deployments.append(p.deployment)
            try deadlines.append(p.deadline.map(Self.microseconds))
        }
        let rows = try tx.query(
            prepared: Self.upsertPredictionsSQL,
            [
                provider, ids, statuses, models, versions, inputs, outputs, errors, metrics,
                createdAt, startedAt, completedAt, dataRemoved, sources, deployments, deadlines,
            ])
        // xmax is 0 on a row version this statement inserted, and set (to our own transaction) on one the
        // ON CONFLICT branch updated.
        let incoming = Dictionary(predictions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var merged: [String: MergeState] = [:]
        merged.reserveCapacity(rows.count)
        for row in rows {
            let id = try row.decode(0, as: String.self)
            if try row.decode(1, as: Bool.self), let record = incoming[id] {
                merged[id] = MergeState(
                    inserted: true,
                    merged: MergedPrediction(
                        status: record.status, outputJSON: record.outputJSON,
                        completedAt: record.completedAt, dataRemoved: record.dataRemoved))
            } else {
                merged[id] = MergeState(
                    inserted: false,
                    merged: MergedPrediction(
                        status: try row.decode(2), outputJSON: try row.decode(3), completedAt: try row.decode(4), dataRemoved: try row.decode(5)))
            }
        }
        return merged
    }

    // MARK: Assets

    /// What a prediction already has: per pointer its number and what its content is (for `AssetSpec.Identity`).
    struct ExistingAsset {
        let index: Int
        /// `sha256` once stored, else the spool's.
        let bytes: String?
        let sourceURL: String
    }

    /// The recorded assets of predictions that existed before this delivery (their row is locked by the
    /// upsert, so no other transaction adds to them until this one ends).
    func existingAssets(of predictionIDs: [String], provider: ProviderName, on tx: Connection) throws -> [String: [String: ExistingAsset]] {
        guard !predictionIDs.isEmpty else { return [:] }
        let rows = try tx.query(prepared: Self.existingAssetsSQL, [provider, try PQArray<String>(Set(predictionIDs).map { Optional($0) })])
        var existing: [String: [String: ExistingAsset]] = [:]
        for row in rows {
            existing[try row.decode(0, as: String.self), default: [:]][try row.decode(1, as: String.self)] =
                ExistingAsset(index: try row.decode(2), bytes: try row.decode(3), sourceURL: try row.decode(4))
        }
        return existing
    }

    /// An asset to insert: the spec, its number, and whether its pointer is qualified by the delivery.
    struct PlannedAsset {
        let predictionID: String
        let spec: AssetSpec
        let index: Int
        /// The pointer holds other content already: recorded as `pointer@{delivery row id}`.
        let qualified: Bool
        let deliveryID: String
    }

    /// Numbers the specs of one prediction. A new prediction's outputs are numbered in the provider's walk
    /// order; an existing one's new outputs take the next free numbers. A spec whose pointer exists is the
    /// same output (skipped) unless its identity says the content differs: then it is a new output under a
    /// qualified pointer, never dropped.
    static func plan(_ specs: [AssetSpec], predictionID: String, existing: [String: ExistingAsset], deliveryID: String) -> [PlannedAsset] {
        var next = (existing.values.map(\.index).max() ?? -1) + 1
        var planned: [PlannedAsset] = []
        var pointers = Set<String>()
        for spec in specs where pointers.insert(spec.pointer).inserted {
            var qualified = false
            if let current = existing[spec.pointer] {
                switch spec.identity {
                case .pointer: continue
                case .bytes(let sha256):
                    if current.bytes == sha256 { continue }
                case .sourceURL(let url):
                    if current.sourceURL == url { continue }
                }
                qualified = true
            }
            planned.append(PlannedAsset(predictionID: predictionID, spec: spec, index: next, qualified: qualified, deliveryID: deliveryID))
            next += 1
        }
        return planned
    }

    /// Plain downloads (most outputs): six columns. Returns the predictions that got a new one.
    func insertPlainAssets(_ assets: [PlannedAsset], provider: ProviderName, checking: Bool = true, on tx: Connection) throws -> Set<String> {
        guard !assets.isEmpty else { return [] }
        var predictionIDs = PQArray<String>(capacity: 32 * assets.count)
        var pointers = PQArray<String>(capacity: 16 * assets.count)
        var indexes = PQArray<Int32>(capacity: 8 * assets.count)
        var urls = PQArray<String>(capacity: 128 * assets.count)
        var deadlines = PQArray<Int64>(capacity: 12 * assets.count)
        for asset in assets {
            guard case .url(let url) = asset.spec.source else { continue }
            try predictionIDs.append(asset.predictionID)
            try pointers.append(asset.spec.pointer)
            try indexes.append(Int32(clamping: asset.index))
            try urls.append(url)
            try deadlines.append(asset.spec.deadline.map(Self.microseconds))
        }
        let parameters: [any PQEncodable] = [provider, predictionIDs, pointers, indexes, urls, deadlines]
        guard checking else {
            try tx.query(prepared: Self.insertNewAssetsSQL, parameters)
            return Set(assets.map(\.predictionID))
        }
        let rows = try tx.query(prepared: Self.insertAssetsSQL, parameters)
        return Set(try rows.map { try $0.decode(0, as: String.self) })
    }

    /// Everything else: inline outputs (decoded or to be decoded by the workers, or failed), polled results,
    /// downloads with details or a qualified pointer. Always unique per pointer (a repeat adds nothing).
    /// Returns the predictions that got one and the spool files the new rows took.
    func insertGeneralAssets(_ assets: [PlannedAsset], provider: ProviderName, on tx: Connection) throws -> (Set<String>, Set<String>) {
        guard !assets.isEmpty else { return ([], []) }
        var predictionIDs = PQArray<String>()
        var pointers = PQArray<String>()
        var qualified = PQArray<Bool>()
        var indexes = PQArray<Int32>()
        var sourceURLs = PQArray<String>()
        var kinds = PQArray<String>()
        var deliveryIDs = PQArray<String>()
        var deadlines = PQArray<Int64>()
        var firstAttempts = PQArray<Int64>()
        var paths = PQArray<String>()
        var hashes = PQArray<String>()
        var sizes = PQArray<Int64>()
        var contentTypes = PQArray<String>()
        var states = PQArray<String>()
        var reasons = PQArray<String>()
        var finishReasons = PQArray<String>()
        var seeds = PQArray<Int64>()
        for asset in assets {
            let spec = asset.spec
            try predictionIDs.append(asset.predictionID)
            try pointers.append(spec.pointer)
            try qualified.append(asset.qualified)
            try indexes.append(Int32(clamping: asset.index))
            try deliveryIDs.append(asset.deliveryID)
            try deadlines.append(spec.deadline.map(Self.microseconds))
            try firstAttempts.append(spec.firstAttemptAt.map(Self.microseconds))
            try finishReasons.append(spec.finishReason)
            try seeds.append(spec.seed)
            var file: Spooled?
            var failure: String?
            switch spec.source {
            case .url(let url):
                try sourceURLs.append(url)
                try kinds.append(AssetSourceKind.url.rawValue)
            case .result(let url):
                try sourceURLs.append(url)
                try kinds.append(AssetSourceKind.stabilityResult.rawValue)
            case .inline(let marker, let decoded):
                try sourceURLs.append(marker)
                try kinds.append(AssetSourceKind.inline.rawValue)
                switch decoded {
                case .spooled(let spooled): file = spooled
                case .malformed(let reason): failure = reason
                case nil: break
                }
            }
            try paths.append(file?.path)
            try hashes.append(file?.sha256)
            try sizes.append(file?.size)
            try contentTypes.append(file?.contentType)
            try states.append((failure == nil ? AssetState.pending : .failed).rawValue)
            try reasons.append(failure)
        }
        let rows = try tx.query(
            prepared: Self.insertGeneralAssetsSQL,
            [
                provider, predictionIDs, pointers, qualified, indexes, sourceURLs, kinds, deliveryIDs, deadlines,
                firstAttempts, paths, hashes, sizes, contentTypes, states, reasons, finishReasons, seeds,
            ])
        var predictions = Set<String>()
        var files = Set<String>()
        for row in rows {
            predictions.insert(try row.decode(0, as: String.self))
            if let path = try row.decode(1, as: String?.self) { files.insert(path) }
        }
        return (predictions, files)
    }

    // MARK: Statements

    // Built once: fixed SQL, so each pooled connection prepares each of them once.
    static let insertNewDeliveriesSQL = """
        INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
        SELECT $1, d.webhook_id, \(timestamp("d.webhook_timestamp")), d.source, d.body,
               \(timestamp("d.received_at")), d.outcome, d.error
        FROM unnest($2::text[], $3::int8[], $4::text[], $5::bytea[], $6::int8[], $7::text[], $8::text[])
             AS d(webhook_id, webhook_timestamp, source, body, received_at, outcome, error)
        """
    static let insertDeliveriesSQL =
        insertNewDeliveriesSQL + """

            ON CONFLICT (provider, webhook_id) DO NOTHING
            RETURNING webhook_id
            """
    /// Whether a large delivery (see `separateBodyBytes`) is recorded already.
    static let deliveryExistsSQL = "SELECT 1 FROM deliveries WHERE provider = $1 AND webhook_id = $2"

    static let upsertPredictionsSQL: String = {
        // rank: starting 0 < processing 1 < terminal 2. The incoming event wins when it is further along,
        // or equally far but not terminal (a terminal status is never replaced, even by another one).
        let rank = { (column: String) in "(CASE \(column) WHEN 'starting' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END)" }
        let newer =
            "(\(rank("EXCLUDED.status")) > \(rank("predictions.status")) OR (\(rank("EXCLUDED.status")) = \(rank("predictions.status")) AND \(rank("predictions.status")) < 2))"
        func fill(_ column: String) -> String {
            "\(column) = CASE WHEN \(newer) THEN COALESCE(EXCLUDED.\(column), predictions.\(column)) ELSE COALESCE(predictions.\(column), EXCLUDED.\(column)) END"
        }
        return """
            INSERT INTO predictions AS predictions (provider, id, status, model, version, input, output, error, metrics,
                                                    created_at, started_at, completed_at, data_removed, source, deployment, deadline)
            SELECT $1, p.id, p.status, p.model, p.version, p.input::jsonb, p.output::jsonb, p.error, p.metrics::jsonb,
                   \(timestamp("p.created_at")), \(timestamp("p.started_at")), \(timestamp("p.completed_at")), p.data_removed,
                   p.source, p.deployment, \(timestamp("p.deadline"))
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

    static let existingAssetsSQL = """
        SELECT prediction_id, pointer, output_index, COALESCE(sha256, spool_sha256), source_url FROM assets
        WHERE provider = $1 AND prediction_id = ANY($2::text[])
        """

    static let insertNewAssetsSQL = """
        INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, deadline)
        SELECT $1, a.prediction_id, a.pointer, a.output_index, a.source_url, \(timestamp("a.deadline"))
        FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[], $6::int8[])
             AS a(prediction_id, pointer, output_index, source_url, deadline)
        """
    static let insertAssetsSQL =
        insertNewAssetsSQL + """

            ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
            RETURNING prediction_id
            """

    /// `delivery_id` names the body an inline output can be decoded from again (and, for other kinds, the
    /// delivery that named the asset); a qualified pointer and an inline asset's marker carry its row id.
    static let insertGeneralAssetsSQL = """
        INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, delivery_id, deadline,
                            next_attempt_at, spool_path, spool_sha256, spool_size, content_type, state, failure_reason,
                            last_error, finish_reason, seed)
        SELECT $1, a.prediction_id, CASE WHEN a.qualified THEN a.pointer || '@' || d.id ELSE a.pointer END, a.output_index,
               COALESCE(a.source_url, 'inline:deliveries/' || d.id || '#' || a.pointer), a.source_kind, d.id,
               \(timestamp("a.deadline")), COALESCE(\(timestamp("a.first_attempt")), now()),
               a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.state, a.failure_reason, a.failure_reason,
               a.finish_reason, a.seed
        FROM unnest($2::text[], $3::text[], $4::bool[], $5::int4[], $6::text[], $7::text[], $8::text[], $9::int8[],
                    $10::int8[], $11::text[], $12::text[], $13::int8[], $14::text[], $15::text[], $16::text[], $17::text[],
                    $18::int8[])
             AS a(prediction_id, pointer, qualified, output_index, source_url, source_kind, webhook_id, deadline, first_attempt,
                  spool_path, spool_sha256, spool_size, content_type, state, failure_reason, finish_reason, seed)
        LEFT JOIN deliveries d ON d.provider = $1 AND d.webhook_id = a.webhook_id
        ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
        RETURNING prediction_id, spool_path
        """

    /// Instants travel as whole microseconds since the Unix epoch: exact, unlike a Double of seconds.
    static func microseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
    static func timestamp(_ column: String) -> String { "(timestamptz 'epoch' + \(column) * interval '1 microsecond')" }
}
