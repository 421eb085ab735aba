import Foundation
import PQ

/// What became of one data: output decoded before its delivery was recorded.
enum SpooledDataOutput: Sendable {
    /// Its bytes are in the spool, fsynced.
    case spooled(InlineSpooler.Spooled)
    /// It is not a decodable data: URI (bad base64, empty): recorded as a failed asset with this reason.
    case malformed(reason: String)
}

/// Replicate's `data:` outputs: decoded from the body into the spool before the 2xx, as Stability's inline
/// results are (the same `InlineSpooler`, writer and fsyncs), then recorded as `inline` assets and uploaded
/// like any other. Never on the HTTP event thread: the route hands such a body to another thread first.
extension ReplicateIntake {
    /// Whether the body may carry data: outputs and should be decoded before it is recorded. Cheap (one scan
    /// for `"data:`), so the route asks it on the event thread; a miss (an escaped scheme) only means the
    /// workers decode the output from the recorded delivery instead.
    public static func mayCarryDataOutputs(_ body: [UInt8]) -> Bool {
        body.withUnsafeBufferPointer(DataURI.mayOccur)
    }

    /// The delivery with its data: outputs decoded into the spool, each file and the directory fsynced, so a
    /// 2xx sent after recording it promises that the bytes are on disk. Only for a terminal prediction whose
    /// data was not removed (other events queue nothing); a body that is not a prediction is returned as it
    /// is (intake keeps it raw). A malformed data: URI is noted and becomes a failed asset. Throws
    /// `ArchiveError` when the spool cannot take the bytes (disk full): nothing was acknowledged, the sender
    /// retries.
    public func spoolingDataOutputs(of delivery: Delivery) throws -> Delivery {
        guard let spool, let prediction = try? ReplicatePrediction.parse(delivery.body) else { return delivery }
        let data = prediction.outputs.filter(\.isData)
        guard !data.isEmpty else { return delivery }
        var decoded: [String: SpooledDataOutput] = [:]
        do {
            try delivery.body.withUnsafeBufferPointer { body in
                for output in data where decoded[output.pointer] == nil {
                    guard let span = output.dataSpan else { continue }
                    do {
                        decoded[output.pointer] = .spooled(try Self.decodeDataOutput(span, pointer: output.pointer, body: body,
                                                                                      writer: try spool.inlineWriter()))
                    } catch let error as InlineSpooler.InvalidBase64 {
                        decoded[output.pointer] = .malformed(reason: "malformed data: URI at \(output.pointer): \(error.reason)")
                    }
                }
            }
            if decoded.values.contains(where: { if case .spooled = $0 { true } else { false } }) { try spool.syncDirectory() }
        } catch {
            for case .spooled(let file) in decoded.values { spool.remove(file.path) }
            throw error
        }
        var spooled = delivery
        spooled.dataOutputs = decoded
        return spooled
    }

    /// Decodes the data: URI whose JSON string is `span` of `body` into `writer` (which it finishes, with
    /// an fsync). Throws `InlineSpooler.InvalidBase64` for a payload that does not decode, `ArchiveError`
    /// for a spool failure.
    static func decodeDataOutput(_ span: JSONByteScanner.StringSpan, pointer: String, body: UnsafeBufferPointer<UInt8>,
                                 writer: Spool.Writer) throws -> InlineSpooler.Spooled {
        guard let header = OutputURLWalker.dataHeader(span, in: JSONByteScanner(body)) else {
            writer.discard()
            throw InlineSpooler.InvalidBase64(pointer: pointer, reason: "not a data: URI")
        }
        let decoder = DataURIPayloadDecoder(header: header) { chunk in try writer.write(chunk) }
        return try InlineSpooler.spool(span, of: body, pointer: pointer, through: decoder, into: writer) { decoder in
            DataURI.contentType(header: header, head: decoder.head)
        }
    }

    /// Removes the delivery's decoded files; for a delivery that was not recorded (its sender retries, or a
    /// commit whose outcome is unknown: the workers then decode the outputs from the recorded delivery).
    public func removeSpoolFiles(of delivery: Delivery) {
        removeSpoolFiles(of: [delivery], except: [])
    }

    /// After a commit: the decoded files that no asset took (a duplicate delivery, outputs already recorded).
    func removeSpoolFiles(of deliveries: [Delivery], except used: Set<String>) {
        guard let spool else { return }
        for delivery in deliveries {
            for case .spooled(let file) in delivery.dataOutputs.values {
                // A file a committed row took is the sweep's to judge from now on; the rest go.
                if used.contains(file.path) { spool.release(file.path) } else { spool.remove(file.path) }
            }
        }
    }

    /// A data: output to record: an `inline` asset whose bytes were decoded into the spool, or will be by the
    /// workers from the recorded delivery (`delivery_id`), or a failed one when they cannot be.
    struct DataAsset {
        let predictionID: String
        let pointer: String
        let index: Int
        /// The URI's header (`data:image/png;base64`), kept as the asset's `source_url`.
        let header: String
        let webhookID: String
        let decoded: SpooledDataOutput?
    }

    /// Inserts data: assets (unique per prediction and pointer, so a repeat adds nothing); returns the
    /// predictions that got one and the spool files the new rows took.
    func insertDataAssets(_ assets: [DataAsset], on tx: Connection) throws -> (predictions: Set<String>, spoolFiles: Set<String>) {
        guard !assets.isEmpty else { return ([], []) }
        var predictionIDs = PQArray<String>(), pointers = PQArray<String>(), indexes = PQArray<Int32>()
        var headers = PQArray<String>(), webhookIDs = PQArray<String>(), paths = PQArray<String>()
        var hashes = PQArray<String>(), sizes = PQArray<Int64>(), contentTypes = PQArray<String>()
        var states = PQArray<String>(), reasons = PQArray<String>()
        for asset in assets {
            try predictionIDs.append(asset.predictionID); try pointers.append(asset.pointer)
            try indexes.append(Int32(clamping: asset.index)); try headers.append(asset.header); try webhookIDs.append(asset.webhookID)
            switch asset.decoded {
            case .spooled(let file):
                try paths.append(file.path); try hashes.append(file.sha256); try sizes.append(file.size)
                try contentTypes.append(file.contentType); try states.append("pending"); try reasons.append(nil)
            case .malformed(let reason):
                try paths.append(nil); try hashes.append(nil); try sizes.append(nil)
                try contentTypes.append(nil); try states.append("failed"); try reasons.append(reason)
            case nil:
                try paths.append(nil); try hashes.append(nil); try sizes.append(nil)
                try contentTypes.append(nil); try states.append("pending"); try reasons.append(nil)
            }
        }
        let rows = try tx.query(prepared: Self.insertDataAssetsSQL,
                                [Self.provider, predictionIDs, pointers, indexes, headers, webhookIDs, paths, hashes, sizes,
                                 contentTypes, states, reasons])
        var predictions = Set<String>(), files = Set<String>()
        for row in rows {
            predictions.insert(try row.decode(0, as: String.self))
            if let path = try row.decode(1, as: String?.self) { files.insert(path) }
        }
        return (predictions, files)
    }

    /// No deadline: the bytes are ours (spool, delivery), not the provider's to delete.
    static let insertDataAssetsSQL = """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, delivery_id,
                                spool_path, spool_sha256, spool_size, content_type, state, failure_reason, last_error)
            SELECT $1, a.prediction_id, a.pointer, a.output_index, a.source_url, 'inline',
                   (SELECT d.id FROM deliveries d WHERE d.provider = $1 AND d.webhook_id = a.webhook_id),
                   a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.state, a.failure_reason, a.failure_reason
            FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[],
                        $10::text[], $11::text[], $12::text[])
                 AS a(prediction_id, pointer, output_index, source_url, webhook_id, spool_path, spool_sha256, spool_size,
                      content_type, state, failure_reason)
            ON CONFLICT (provider, prediction_id, pointer) DO NOTHING
            RETURNING prediction_id, spool_path
            """
}
