import Foundation

/// Decodes one inline artifact's base64 field straight from the request body into a spool file.
///
/// Memory stays at one 64 KiB chunk whatever the size: the JSON escapes are undone run by run, the base64
/// is decoded chunk by chunk, and each chunk is written and hashed before the next is decoded.
enum InlineSpooler {
    /// The base64 text was not base64 (the delivery is kept but refused with 400).
    struct InvalidBase64: Error, CustomStringConvertible {
        let pointer: String
        let reason: String
        var description: String { "\(pointer): invalid base64 (\(reason))" }
    }

    /// Writes and fsyncs the artifact's bytes. Throws `InvalidBase64`, or `ArchiveError` for a spool failure.
    static func spool(
        _ artifact: StabilityBody.Artifact, body: UnsafeBufferPointer<UInt8>,
        writer: Spool.Writer
    ) throws -> Spooled {
        try spool(
            artifact.base64, of: body, pointer: artifact.pointer,
            through: Base64StreamDecoder { chunk in try writer.write(chunk) }, into: writer
        ) { decoder in
            MediaSniffer.contentType(head: decoder.head, kind: artifact.kind)
        }
    }

    /// The same for any string of `body` that a streaming decoder turns into bytes (base64, a data: URI);
    /// `decoder` must write into `writer`. `contentType` names the bytes once decoded (from their first ones).
    static func spool<Decoder: SpoolingDecoder>(
        _ text: JSONByteScanner.StringSpan, of body: UnsafeBufferPointer<UInt8>,
        pointer: String, through decoder: Decoder, into writer: Spool.Writer,
        contentType: (Decoder) -> String
    ) throws -> Spooled {
        let scanner = JSONByteScanner(body)
        return try spool(pointer: pointer, through: decoder, into: writer, contentType: contentType) { decode in
            try scanner.forEachUnescapedRun(text, decode)
        }
    }

    /// An artifact that `StabilityBody.parse` found in a `JSONSkeleton` of `body`: a short base64 field is
    /// decoded from the skeleton, a long one streamed from the body itself (memory or its spill file).
    static func spool(
        _ artifact: StabilityBody.Artifact, in skeleton: JSONSkeleton, body: DeliveryBody,
        writer: Spool.Writer
    ) throws -> Spooled {
        let decoder = Base64StreamDecoder { chunk in try writer.write(chunk) }
        let contentType: (Base64StreamDecoder) -> String = { MediaSniffer.contentType(head: $0.head, kind: artifact.kind) }
        switch skeleton.locate(artifact.base64) {
        case .inSkeleton(let span):
            return try skeleton.bytes.withUnsafeBufferPointer { bytes in
                try spool(span, of: bytes, pointer: artifact.pointer, through: decoder, into: writer, contentType: contentType)
            }
        case .inBody(let elision):
            return try spool(pointer: artifact.pointer, through: decoder, into: writer, contentType: contentType) { decode in
                try elision.forEachUnescapedRun(in: body, decode)
            }
        }
    }

    /// The common part: `feed` hands the text's unescaped runs to the decoder it is given; the decoded bytes
    /// go to `writer`, which is finished (fsynced) or discarded whatever happens.
    static func spool<Decoder: SpoolingDecoder>(
        pointer: String, through decoder: Decoder, into writer: Spool.Writer,
        contentType: (Decoder) -> String,
        feed: ((UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Void
    ) throws -> Spooled {
        do {
            try feed { run in try decoder.decode(run) }
            try decoder.finish()
        } catch let error as Base64StreamDecoder.Failure {
            writer.discard()
            throw InvalidBase64(pointer: pointer, reason: error.message)
        } catch let error as JSONByteScanner.Failure {
            writer.discard()
            throw InvalidBase64(pointer: pointer, reason: error.message)
        } catch {
            writer.discard()
            throw error
        }
        guard decoder.decodedCount > 0 else {
            writer.discard()
            throw InvalidBase64(pointer: pointer, reason: "empty")
        }
        let (path, sha256) = try writer.finish()
        return Spooled(path: path, sha256: sha256, size: writer.size, contentType: contentType(decoder))
    }
}

/// A decoder the spooler drives: text in pieces (the unescaped runs of a JSON string), bytes out to the
/// sink it was made with, chunk by chunk.
protocol SpoolingDecoder: AnyObject {
    func decode(_ text: UnsafeBufferPointer<UInt8>) throws
    @discardableResult func finish() throws -> Int64
    var decodedCount: Int64 { get }
    /// The first bytes decoded, for content sniffing.
    var head: [UInt8] { get }
}

extension Base64StreamDecoder: SpoolingDecoder {}
extension DataURIPayloadDecoder: SpoolingDecoder {}
