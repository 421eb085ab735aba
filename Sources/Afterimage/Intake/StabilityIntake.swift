import Foundation
import PQ

/// Records Stability deliveries. Inline bytes are decoded into the spool and fsynced, then the raw body,
/// the prediction and its assets are committed in one transaction, so a 2xx means the bytes are on disk
/// and the work is queued. An async reference becomes one asset that the workers poll until its deadline.
public struct StabilityIntake: Sendable {
    public static let provider = "stability"
    /// Stability keeps async results for 24 hours after the job was created.
    public static let resultRetention: TimeInterval = 24 * 3600

    let baseURL: String
    let spool: Spool

    /// `baseURL` is `stability.base_url`: references become `{baseURL}/v2beta/results/{id}`, or
    /// `{baseURL}/v2beta/audio/results/{id}` for `"kind": "audio"`.
    public init(baseURL: String, spool: Spool) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.spool = spool
    }

    /// Decodes, spools and records one delivery whose body is in `delivery.body`.
    public func record(_ delivery: ReplicateIntake.Delivery, pool: Pool) throws -> IntakeOutcome {
        try record(delivery, body: .bytes(delivery.body), pool: pool)
    }

    /// Decodes, spools and records one delivery, reading its body from `body` (memory, or the file the HTTP
    /// server spilled it to; `delivery.body` is not read). Streamed from end to end: a `JSONSkeleton` of the
    /// body is parsed, base64 fields are decoded piece by piece into the spool, and the raw body is copied
    /// piece by piece to `deliveries.body` (`DeliveryRecord`), so a 60 MiB body costs a few hundred KiB of
    /// memory. Connections are taken from `pool` only around the database work, never while a large body
    /// is decoded.
    public func record(_ delivery: ReplicateIntake.Delivery, body: DeliveryBody, pool: Pool) throws -> IntakeOutcome {
        // A retried delivery is answered without decoding its body again.
        if let known = try pool.withConnection({ try knownDelivery(delivery.webhookID, on: $0) }) {
            return .duplicate(predictionID: known)
        }
        let skeleton: JSONSkeleton
        let parsed: StabilityBody
        do {
            skeleton = try JSONSkeleton(reading: body)
            parsed = try skeleton.bytes.withUnsafeBufferPointer { try StabilityBody.parse($0) }
        } catch let error as JSONSkeleton.Failure {
            return try recordUnparseable(delivery, body: body, message: error.isSyntax ? "not valid JSON: \(error)" : "\(error)", pool: pool)
        } catch let error as StabilityBody.ParseError {
            return try recordUnparseable(delivery, body: body, message: error.message, pool: pool)
        }
        var spooled: [InlineSpooler.Spooled] = []
        // The files stay claimed (no spool sweep takes them) until the rows that refer to them are committed
        // or they are removed.
        defer { spooled.forEach { spool.release($0.path) } }
        do {
            for artifact in parsed.artifacts {
                spooled.append(try InlineSpooler.spool(artifact, in: skeleton, body: body, writer: try spool.inlineWriter()))
            }
            if !spooled.isEmpty { try spool.syncDirectory() }
        } catch let error as InlineSpooler.InvalidBase64 {
            spooled.forEach { spool.remove($0.path) }
            return try recordUnparseable(delivery, body: body, message: error.description, pool: pool)
        } catch {
            spooled.forEach { spool.remove($0.path) }
            throw error
        }
        let predictionID = parsed.predictionID ?? parsed.generationID ?? spooled[0].sha256
        do {
            let (outcome, unused) = try pool.withConnection { connection in
                try connection.transaction { tx in try commit(delivery, body: body, parsed, spooled, predictionID: predictionID, on: tx) }
            }
            unused.forEach { spool.remove($0) }
            return outcome
        } catch {
            // Nothing was acknowledged: the files have no row and the sender will retry.
            spooled.forEach { spool.remove($0.path) }
            // A concurrent copy of this delivery committed first: this one is its duplicate.
            if error.isDuplicateDelivery {
                return .duplicate(predictionID: try pool.withConnection { try knownDelivery(delivery.webhookID, on: $0) } ?? predictionID)
            }
            throw error
        }
    }

    /// The prediction a recorded webhook id belongs to ("" when it was not understood); nil when new.
    func knownDelivery(_ webhookID: String, on connection: Connection) throws -> String? {
        guard let row = try connection.query("""
            SELECT (SELECT a.prediction_id FROM assets a WHERE a.delivery_id = d.id LIMIT 1)
            FROM deliveries d WHERE d.provider = $1 AND d.webhook_id = $2
            """, [Self.provider, webhookID]).first else { return nil }
        return try row.decode(0, as: String?.self) ?? ""
    }

    /// Keeps a signed body that is not a Stability result (answered 400): the raw body, with the reason.
    func recordUnparseable(_ delivery: ReplicateIntake.Delivery, body: DeliveryBody, message: String, pool: Pool) throws -> IntakeOutcome {
        do {
            try pool.withConnection { connection in
                _ = try insertDelivery(delivery, body: body, outcome: "unparseable", error: message, on: connection)
            }
        } catch where error.isDuplicateDelivery {
            // Kept already by a concurrent copy.
        }
        return .unparseable(message: message)
    }

    /// The delivery's id. Throws unique_violation when this webhook id is already recorded (see `DeliveryRecord`).
    func insertDelivery(_ delivery: ReplicateIntake.Delivery, body: DeliveryBody, outcome: String, error: String?,
                        on tx: Connection) throws -> Int64 {
        try DeliveryRecord(provider: Self.provider, webhookID: delivery.webhookID, timestamp: delivery.timestamp,
                           source: delivery.source, receivedAt: delivery.receivedAt, outcome: outcome, error: error)
            .insert(body: body, on: tx)
    }

    /// Inside the transaction: delivery, prediction, assets, NOTIFY. Returns the outcome and the spool
    /// files no row took (an artifact already recorded by an earlier delivery). A delivery recorded
    /// meanwhile fails the transaction with unique_violation (`record` answers it as a duplicate).
    func commit(_ delivery: ReplicateIntake.Delivery, body: DeliveryBody, _ parsed: StabilityBody, _ spooled: [InlineSpooler.Spooled],
                predictionID: String, on tx: Connection) throws -> (IntakeOutcome, [String]) {
        let deliveryID = try insertDelivery(delivery, body: body, outcome: "accepted", error: nil, on: tx)
        let inline = !spooled.isEmpty
        try tx.execute("""
            INSERT INTO predictions (provider, id, status, created_at, completed_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (provider, id) DO NOTHING
            """, [Self.provider, predictionID, inline ? "succeeded" : "processing", delivery.receivedAt,
                  inline ? delivery.receivedAt : nil])
        // Output numbers continue after the prediction's earlier assets (an app may send several results
        // under one prediction_id): a number, and so an object key, is never given twice. The row lock
        // makes concurrent deliveries of one prediction take turns.
        _ = try tx.query("SELECT 1 FROM predictions WHERE provider = $1 AND id = $2 FOR UPDATE", [Self.provider, predictionID])
        var index = try tx.query("SELECT COALESCE(max(output_index) + 1, 0) FROM assets WHERE provider = $1 AND prediction_id = $2",
                                 [Self.provider, predictionID]).first.map { try $0.decode(0, as: Int.self) } ?? 0
        var unused: [String] = []
        var inserted = 0
        if inline {
            for (artifact, file) in zip(parsed.artifacts, spooled) {
                guard let pointer = try pointer(artifact.pointer, content: file.sha256, column: "COALESCE(sha256, spool_sha256)",
                                                predictionID: predictionID, deliveryID: deliveryID, on: tx) else {
                    unused.append(file.path)
                    continue
                }
                let rows = try tx.query("""
                    INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, delivery_id,
                                        spool_path, spool_sha256, spool_size, content_type, finish_reason, seed)
                    VALUES ($1, $2, $3, $4, $5, 'inline', $6, $7, $8, $9, $10, $11, $12)
                    ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
                    RETURNING id
                    """, [Self.provider, predictionID, pointer, index, "inline:deliveries/\(deliveryID)#\(artifact.pointer)",
                          deliveryID, file.path, file.sha256, file.size, file.contentType, artifact.finishReason, artifact.seed])
                if rows.isEmpty { unused.append(file.path) } else { inserted += 1; index += 1 }
            }
        } else if let generationID = parsed.generationID {
            let url = "\(baseURL)\(parsed.kind.resultsPath)\(generationID)"
            if let pointer = try pointer("/id", content: url, column: "source_url", predictionID: predictionID, deliveryID: deliveryID, on: tx) {
                // The first poll waits: a generation is rarely done sooner, and Stability asks clients to
                // poll no more often than every 10 s.
                inserted = try tx.execute("""
                    INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, delivery_id, deadline,
                                        next_attempt_at)
                    VALUES ($1, $2, $3, $4, $5, 'stability_result', $6, $7, $8)
                    ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
                    """, [Self.provider, predictionID, pointer, index, url, deliveryID,
                          delivery.receivedAt.addingTimeInterval(Self.resultRetention),
                          delivery.receivedAt.addingTimeInterval(StabilitySource.minimumPollInterval)])
            }
        }
        if inserted > 0 { try tx.notify(ReplicateIntake.assetsChannel, payload: "\(Self.provider)/\(predictionID)") }
        return (.accepted(predictionID: predictionID, assets: inline ? spooled.count : 1), unused)
    }

    /// The pointer to record an output under, or nil when the prediction already has this very output
    /// (a resent body: one set of objects). Other content at the same pointer (an app reusing its
    /// prediction_id) is a new output under a pointer qualified by the delivery: never dropped.
    /// `column` is SQL written here, never input.
    func pointer(_ pointer: String, content: String, column: StaticString, predictionID: String, deliveryID: Int64,
                 on tx: Connection) throws -> String? {
        guard let existing = try tx.query("SELECT \(column) FROM assets WHERE provider = $1 AND prediction_id = $2 AND pointer = $3",
                                          [Self.provider, predictionID, pointer]).first else { return pointer }
        return try existing.decode(0, as: String?.self) == content ? nil : "\(pointer)@\(deliveryID)"
    }
}
