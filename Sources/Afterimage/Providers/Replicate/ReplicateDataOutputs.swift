import Foundation

/// Replicate's `data:` outputs: decoded from the body into the spool before the 2xx, as Stability's inline
/// results are (the same `InlineSpooler`, writer and fsyncs), then recorded as `inline` assets and uploaded
/// like any other. Never on the HTTP event thread: the route hands such a body to the handler pool first.
extension ReplicateProvider {
    /// Whether the body may carry data: outputs and should be decoded before it is recorded. Cheap (one scan
    /// for `"data:`), so the route asks it on the event thread; a miss (an escaped scheme) only means the
    /// workers decode the output from the recorded delivery instead.
    public func mayCarryInlineOutputs(_ body: [UInt8]) -> Bool {
        body.withUnsafeBufferPointer(DataURI.mayOccur)
    }

    /// The delivery with its data: outputs decoded into the spool, each file and the directory fsynced, so a
    /// 2xx sent after recording it promises that the bytes are on disk. Only for a terminal prediction whose
    /// data was not removed (other events queue nothing); a body that is not a prediction is returned as it
    /// is (intake keeps it raw). A malformed data: URI is noted and becomes a failed asset. Throws
    /// `ArchiveError` when the spool cannot take the bytes (disk full): nothing was acknowledged, the sender
    /// retries.
    public func spoolingInlineOutputs(of delivery: WebhookDelivery, into spool: Spool) throws -> WebhookDelivery {
        guard let prediction = try? ReplicatePrediction.parse(delivery.body) else { return delivery }
        let data = prediction.outputs.filter(\.isData)
        guard !data.isEmpty else { return delivery }
        var decoded: [String: DecodedInline] = [:]
        do {
            try delivery.body.withUnsafeBufferPointer { body in
                for output in data where decoded[output.pointer] == nil {
                    guard let span = output.dataSpan else { continue }
                    do {
                        decoded[output.pointer] = .spooled(
                            try Self.decodeDataOutput(
                                span, pointer: output.pointer, body: body,
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
        spooled.inlineOutputs = decoded
        return spooled
    }

    /// A data: output found again at its pointer in the recorded webhook body (its spool file is gone, or it
    /// was recorded without one by a reconciler that has no access to the spool).
    public func redecodeInline(pointer: String, body: UnsafeBufferPointer<UInt8>, into writer: Spool.Writer) throws -> Spooled {
        guard let (span, _) = ReplicatePrediction.dataOutput(at: pointer, in: body) else {
            writer.discard()
            throw ArchiveError(.inlineLost, "data: output: the recorded delivery has none at \(pointer) (it came with another event)")
        }
        do {
            return try Self.decodeDataOutput(span, pointer: pointer, body: body, writer: writer)
        } catch let error as InlineSpooler.InvalidBase64 {
            throw ArchiveError(.inlineLost, "malformed data: URI at \(pointer): \(error.reason)")
        }
    }

    /// Decodes the data: URI whose JSON string is `span` of `body` into `writer` (which it finishes, with
    /// an fsync). Throws `InlineSpooler.InvalidBase64` for a payload that does not decode, `ArchiveError`
    /// for a spool failure.
    static func decodeDataOutput(
        _ span: JSONByteScanner.StringSpan, pointer: String, body: UnsafeBufferPointer<UInt8>,
        writer: Spool.Writer
    ) throws -> Spooled {
        guard let header = OutputURLWalker.dataHeader(span, in: JSONByteScanner(body)) else {
            writer.discard()
            throw InlineSpooler.InvalidBase64(pointer: pointer, reason: "not a data: URI")
        }
        let decoder = DataURIPayloadDecoder(header: header) { chunk in try writer.write(chunk) }
        return try InlineSpooler.spool(span, of: body, pointer: pointer, through: decoder, into: writer) { decoder in
            DataURI.contentType(header: header, head: decoder.head)
        }
    }
}
