import Foundation
import Primitives

/// `data:` URIs (RFC 2397) in a prediction's output. Replicate's sync API has returned output files this
/// way (`data:image/png;base64,…`) and its clients treat them as files, so they are outputs to archive.
///
/// Only the header (what comes before the comma) is looked at here, from the string's first bytes: the
/// payload can be megabytes and is decoded straight into the spool (`DataURIPayloadDecoder`).
enum DataURI {
    /// The part before the comma: `data:` and an optional media type with parameters, then `;base64`.
    struct Header: Equatable, Sendable {
        /// The header as written, scheme lower-cased, without the comma: `data:image/png;base64`. It stands
        /// for the output in `source_url` and in the stored output (the payload left out).
        let text: String
        /// Lower-cased `type/subtype` without parameters; nil when the URI names none (RFC 2397 then means
        /// text/plain, but Replicate's files are bytes: the type is sniffed instead).
        let mediaType: String?
        let isBase64: Bool
        /// Bytes of the unescaped string before the payload, the comma included.
        let length: Int
    }

    /// A header longer than this is not one: media types with parameters are short.
    static let maxHeaderBytes = 256

    /// The header when `prefix` (a string's first unescaped bytes, at least `maxHeaderBytes + 1` of them when
    /// the string is that long) begins a data URI: `data:` in any case, then only characters a media type and
    /// its parameters are written with, then a comma. Anything else (a caption that starts with "data:", a
    /// token of a language model's output) is text, not an output file.
    static func header(_ prefix: some Collection<UInt8>) -> Header? {
        let bytes = Array(prefix.prefix(maxHeaderBytes + 1))
        guard bytes.count >= 6, String(decoding: bytes[0..<5], as: UTF8.self).lowercased() == "data:",
            let comma = bytes.firstIndex(of: UInt8(ascii: ","))
        else { return nil }
        let rest = bytes[5..<comma]
        guard rest.allSatisfy(isHeaderByte) else { return nil }
        var parameters = String(decoding: rest, as: UTF8.self).split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        var isBase64 = false
        if parameters.count > 1, parameters.last?.lowercased() == "base64" {
            isBase64 = true
            parameters.removeLast()
        }
        let type = parameters.first?.lowercased() ?? ""
        let typeParts = type.split(separator: "/", omittingEmptySubsequences: false)
        if !type.isEmpty {
            guard typeParts.count == 2, !typeParts[0].isEmpty, !typeParts[1].isEmpty else { return nil }
        }
        // Parameters are attribute=value pairs.
        guard parameters.dropFirst().allSatisfy({ $0.split(separator: "=", omittingEmptySubsequences: false).count == 2 }) else {
            return nil
        }
        return Header(
            text: "data:" + String(decoding: rest, as: UTF8.self), mediaType: type.isEmpty ? nil : type,
            isBase64: isBase64, length: comma + 1)
    }

    /// RFC 2045 token characters, `/` between type and subtype, `;` and `=` around parameters, `%` for
    /// percent-encoded values.
    private static func isHeaderByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$&'*+-.^_`|~/;=%".utf8.contains(byte)
        }
    }

    /// A cheap test for the event thread: whether `body` has `"data:` (any case) anywhere, i.e. may carry a
    /// data: output. A data URI written with escapes in its scheme is missed here and decoded later by the
    /// workers from the recorded delivery instead, so a miss costs speed, never an output.
    static func mayOccur(in body: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = body.baseAddress, body.count >= 6 else { return false }
        var offset = 0
        while offset + 6 <= body.count {
            guard let found = memchr(base + offset, Int32(UInt8(ascii: "\"")), body.count - offset - 5) else { return false }
            let index = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            if body[index + 1] | 0x20 == UInt8(ascii: "d"), body[index + 2] | 0x20 == UInt8(ascii: "a"),
                body[index + 3] | 0x20 == UInt8(ascii: "t"), body[index + 4] | 0x20 == UInt8(ascii: "a"),
                body[index + 5] == UInt8(ascii: ":")
            {
                return true
            }
            offset = index + 1
        }
        return false
    }

    /// The content type to store a decoded output under: the URI's own media type when it says what the
    /// bytes are, else what the first bytes look like (`application/octet-stream` and a missing type say
    /// nothing; the key's extension comes from this type).
    static func contentType(header: Header, head: [UInt8]) -> String {
        if let type = header.mediaType, !["application/octet-stream", "text/plain", "binary/octet-stream"].contains(type) {
            return type
        }
        let kind = header.mediaType.flatMap { $0.split(separator: "/").first.map(String.init) }
        return MediaSniffer.contentType(head: head, kind: kind == "application" || kind == "text" ? nil : kind)
    }
}

/// Decodes a data URI's payload fed in pieces (the unescaped runs of its JSON string, header included):
/// skips the header, then base64 (through `Base64StreamDecoder`) or percent-decoding, into a sink in chunks.
/// Memory stays at one chunk whatever the size.
final class DataURIPayloadDecoder {
    private let header: DataURI.Header
    private var headerLeft: Int
    private let base64: Base64StreamDecoder?
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    // Percent-decoding state: after a '%', its hex digits so far.
    private var inEscape = false
    private var percentDigits: [UInt8] = []
    private var plainBuffer: [UInt8] = []
    private var plainCount: Int64 = 0
    private var plainHead: [UInt8] = []

    init(header: DataURI.Header, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.header = header
        headerLeft = header.length
        self.sink = sink
        base64 = header.isBase64 ? Base64StreamDecoder(sink: sink) : nil
    }

    var decodedCount: Int64 { base64?.decodedCount ?? plainCount }
    /// The first bytes decoded, for content sniffing.
    var head: [UInt8] { base64?.head ?? plainHead }

    func decode(_ text: UnsafeBufferPointer<UInt8>) throws {
        var text = text
        if headerLeft > 0 {
            let skipped = min(headerLeft, text.count)
            headerLeft -= skipped
            text = UnsafeBufferPointer(rebasing: text[skipped...])
            if text.isEmpty { return }
        }
        if let base64 { return try base64.decode(text) }
        for byte in text {
            if inEscape {
                // Inside a %XX escape.
                guard let digit = Hex.value(of: byte) else {
                    throw Base64StreamDecoder.Failure(message: "a % not followed by two hex digits")
                }
                percentDigits.append(digit)
                if percentDigits.count == 2 {
                    try emit(percentDigits[0] << 4 | percentDigits[1])
                    percentDigits = []
                    inEscape = false
                }
                continue
            }
            if byte == UInt8(ascii: "%") {
                inEscape = true
                continue
            }
            guard byte >= 0x20, byte < 0x7F else {
                throw Base64StreamDecoder.Failure(message: "a byte that is not a URI character (0x\(String(byte, radix: 16)))")
            }
            try emit(byte)
        }
    }

    /// Ends the payload; throws when it stopped half-way through an escape or a base64 quantum.
    @discardableResult
    func finish() throws -> Int64 {
        guard headerLeft == 0 else { throw Base64StreamDecoder.Failure(message: "the URI ends inside its header") }
        if let base64 { return try base64.finish() }
        guard !inEscape else { throw Base64StreamDecoder.Failure(message: "the URI ends inside a % escape") }
        try flushPlain()
        return plainCount
    }

    private func emit(_ byte: UInt8) throws {
        plainBuffer.append(byte)
        plainCount += 1
        if plainHead.count < Base64StreamDecoder.headSize { plainHead.append(byte) }
        if plainBuffer.count >= Base64StreamDecoder.chunkSize { try flushPlain() }
    }

    private func flushPlain() throws {
        guard !plainBuffer.isEmpty else { return }
        try plainBuffer.withUnsafeBytes { try sink($0) }
        plainBuffer.removeAll(keepingCapacity: true)
    }
}
