import Foundation

/// Decodes one inline artifact's base64 field straight from the request body into a spool file.
///
/// Memory stays at one 64 KiB chunk whatever the size: the JSON escapes are undone run by run, the base64
/// is decoded chunk by chunk, and each chunk is written and hashed before the next is decoded.
enum InlineSpooler {
    struct Spooled {
        let path: String
        let sha256: String
        let size: Int64
        let contentType: String
    }

    /// The base64 text was not base64 (the delivery is kept but refused with 400).
    struct InvalidBase64: Error, CustomStringConvertible {
        let pointer: String
        let reason: String
        var description: String { "\(pointer): invalid base64 (\(reason))" }
    }

    /// Writes and fsyncs the artifact's bytes. Throws `InvalidBase64`, or `ArchiveError` for a spool failure.
    static func spool(_ artifact: StabilityBody.Artifact, body: UnsafeBufferPointer<UInt8>,
                      writer: Spool.Writer) throws -> Spooled {
        let decoder = Base64StreamDecoder { chunk in try writer.write(chunk) }
        let scanner = JSONByteScanner(body)
        do {
            try scanner.forEachUnescapedRun(artifact.base64) { run in try decoder.decode(run) }
            try decoder.finish()
        } catch let error as Base64StreamDecoder.Failure {
            writer.discard()
            throw InvalidBase64(pointer: artifact.pointer, reason: error.message)
        } catch let error as JSONByteScanner.Failure {
            writer.discard()
            throw InvalidBase64(pointer: artifact.pointer, reason: error.message)
        } catch {
            writer.discard()
            throw error
        }
        guard decoder.decodedCount > 0 else {
            writer.discard()
            throw InvalidBase64(pointer: artifact.pointer, reason: "empty")
        }
        let (path, sha256) = try writer.finish()
        return Spooled(path: path, sha256: sha256, size: writer.size,
                       contentType: MediaSniffer.contentType(head: decoder.head, kind: artifact.kind))
    }
}
