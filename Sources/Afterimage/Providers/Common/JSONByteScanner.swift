import Foundation
import Primitives

/// A forward-only scanner over JSON bytes that reports where values are instead of building them.
///
/// A Stability body can hold a 40 MiB base64 string; JSONSerialization would turn it into a String (and
/// the tree around it) several times over. This scanner finds the string's byte range in the request
/// body as it is, so the bytes can be decoded straight into a spool file. It validates the structure
/// it walks (strings, numbers, literals, nesting) but keeps no values other than the ones asked for.
struct JSONByteScanner {
    struct Failure: Error, CustomStringConvertible, Equatable {
        let message: String
        let offset: Int
        var description: String { "\(message) at byte \(offset)" }
    }

    /// A string value's contents between its quotes, still escaped.
    struct StringSpan: Equatable {
        let range: Range<Int>
        let hasEscapes: Bool
    }

    /// Nesting deeper than this is refused: no legitimate body needs it, and it bounds the recursion.
    static let maxDepth = 32

    let bytes: UnsafeBufferPointer<UInt8>
    private(set) var offset = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func failure(_ message: String) -> Failure { Failure(message: message, offset: offset) }

    mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x0A, 0x0D, 0x09: offset += 1
            default: return
            }
        }
    }

    /// The next non-whitespace byte, not consumed; nil at the end.
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return offset < bytes.count ? bytes[offset] : nil
    }

    mutating func expect(_ byte: UInt8) throws(Failure) {
        guard peek() == byte else { throw failure("expected '\(Character(UnicodeScalar(byte)))'") }
        offset += 1
    }

    /// After the value: only whitespace may follow.
    mutating func expectEnd() throws(Failure) {
        guard peek() == nil else { throw failure("unexpected bytes after the JSON value") }
    }

    /// The string's span. Escapes are checked here (only JSON's eight and `\uXXXX`, surrogates in pairs),
    /// so a span that passed can be unescaped without failing; raw bytes are not checked as UTF-8 here
    /// (see `isValidUTF8`), which keeps a 40 MiB base64 string to one compare per byte.
    mutating func scanString() throws(Failure) -> StringSpan {
        try expect(UInt8(ascii: "\""))
        let start = offset
        var escapes = false
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") {
                offset += 1
                return StringSpan(range: start..<(offset - 1), hasEscapes: escapes)
            }
            if byte == UInt8(ascii: "\\") {
                escapes = true
                try scanEscape()
                continue
            }
            guard byte >= 0x20 else { throw failure("control character in a string") }
            offset += 1
        }
        throw failure("unterminated string")
    }

    /// Steps over one escape at `offset` (its backslash), refusing what JSON does not allow.
    private mutating func scanEscape() throws(Failure) {
        guard offset + 1 < bytes.count else { throw failure("unterminated string") }
        switch bytes[offset + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            offset += 2
        case UInt8(ascii: "u"):
            guard let unit = hexUnit(at: offset + 2) else { throw failure("malformed \\u escape") }
            offset += 6
            switch unit {
            case 0xD800...0xDBFF:
                // A high surrogate is only half a character: the low half must follow as an escape too.
                guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u"),
                    let low = hexUnit(at: offset + 2), (0xDC00...0xDFFF).contains(low)
                else { throw failure("unpaired surrogate escape") }
                offset += 6
            case 0xDC00...0xDFFF:
                throw failure("unpaired surrogate escape")
            default:
                break
            }
        default:
            throw failure("invalid escape")
        }
    }

    /// The four hex digits at `index` as a UTF-16 code unit; nil when they are not four hex digits.
    private func hexUnit(at index: Int) -> UInt16? {
        guard index + 4 <= bytes.count else { return nil }
        var unit: UInt16 = 0
        for i in index..<(index + 4) {
            guard let digit = Hex.value(of: bytes[i]) else { return nil }
            unit = unit << 4 | UInt16(digit)
        }
        return unit
    }

    /// The number's text, validated against JSON's grammar.
    mutating func scanNumber() throws(Failure) -> Range<Int> {
        _ = peek()
        let start = offset
        func digits() -> Int {
            let from = offset
            while offset < bytes.count, (0x30...0x39).contains(bytes[offset]) { offset += 1 }
            return offset - from
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let integerStart = offset
        let integerDigits = digits()
        guard integerDigits > 0 else { throw failure("malformed number") }
        guard integerDigits == 1 || bytes[integerStart] != UInt8(ascii: "0") else { throw failure("number with a leading zero") }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard digits() > 0 else { throw failure("malformed number") }
        }
        if offset < bytes.count, bytes[offset] | 0x20 == UInt8(ascii: "e") {
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            guard digits() > 0 else { throw failure("malformed number") }
        }
        return start..<offset
    }

    /// Walks over any value, checking its structure.
    mutating func skipValue(depth: Int = 0) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth)") }
        switch peek() {
        case UInt8(ascii: "\""):
            _ = try scanString()
        case UInt8(ascii: "{"):
            try forEachMember(depth: depth) { (scanner: inout JSONByteScanner, _: StringSpan) throws(Failure) in
                try scanner.skipValue(depth: depth + 1)
            }
        case UInt8(ascii: "["):
            try forEachElement(depth: depth) { (scanner: inout JSONByteScanner, _: Int) throws(Failure) in
                try scanner.skipValue(depth: depth + 1)
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case .some: _ = try scanNumber()
        case nil: throw failure("unexpected end of the body")
        }
    }

    private mutating func literal(_ word: String) throws(Failure) {
        for char in word.utf8 {
            guard offset < bytes.count, bytes[offset] == char else { throw failure("malformed literal") }
            offset += 1
        }
    }

    /// Calls `member` with each key of an object; `member` must consume the value.
    mutating func forEachMember(depth: Int = 0, _ member: (inout JSONByteScanner, StringSpan) throws(Failure) -> Void) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth)") }
        try expect(UInt8(ascii: "{"))
        if peek() == UInt8(ascii: "}") {
            offset += 1
            return
        }
        while true {
            let key = try scanString()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "}"):
                offset += 1
                return
            default: throw failure("expected ',' or '}'")
            }
        }
    }

    /// Calls `element` with each index of an array; `element` must consume the value.
    mutating func forEachElement(depth: Int = 0, _ element: (inout JSONByteScanner, Int) throws(Failure) -> Void) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth)") }
        try expect(UInt8(ascii: "["))
        if peek() == UInt8(ascii: "]") {
            offset += 1
            return
        }
        var index = 0
        while true {
            try element(&self, index)
            index += 1
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "]"):
                offset += 1
                return
            default: throw failure("expected ',' or ']'")
            }
        }
    }

    /// True when the span's raw bytes are exactly `text` (keys are compared unescaped only when they need no escapes).
    func span(_ span: StringSpan, equals text: StaticString) -> Bool {
        guard !span.hasEscapes, span.range.count == text.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        return span.range.indices.allSatisfy { bytes[$0] == expected[$0 - span.range.lowerBound] }
    }

    /// A short string's value, unescaped; nil when longer than `limit` bytes (escaped) or not valid.
    func string(_ span: StringSpan, limit: Int = 4096) -> String? {
        guard span.range.count <= limit else { return nil }
        // `String(validating:as:)` showed in the intake profile as unspecialised generic code; checking
        // first and then decoding (nothing left to repair) is the same answer for a fraction of the cost.
        let raw = UnsafeBufferPointer(rebasing: bytes[span.range])
        if !span.hasEscapes { return Self.isValidUTF8(raw) ? String(decoding: raw, as: UTF8.self) : nil }
        guard let unescaped = unescape(span) else { return nil }
        return unescaped.withUnsafeBufferPointer { Self.isValidUTF8($0) ? String(decoding: $0, as: UTF8.self) : nil }
    }

    /// The string's first `maxBytes` bytes (or a few more, to end a character), unescaped: enough to tell
    /// what a string is without copying all of it (a data: URI can be megabytes). Nil on a malformed escape.
    func prefix(_ span: StringSpan, maxBytes: Int) -> [UInt8]? {
        unescape(span, stoppingAfter: maxBytes)
    }

    /// The span's bytes with escapes replaced by the UTF-8 they stand for, up to `stoppingAfter` bytes; nil
    /// on a malformed escape (which `scanString` has already refused, so only for spans made elsewhere).
    private func unescape(_ span: StringSpan, stoppingAfter limit: Int = .max) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(min(span.range.count, limit))
        var index = span.range.lowerBound
        let end = span.range.upperBound
        while index < end, out.count < limit {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                index += 1
                continue
            }
            guard index + 1 < end else { return nil }
            switch bytes[index + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(bytes[index + 1])
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard index + 6 <= end, let unit = hexUnit(at: index + 2) else { return nil }
                var value = UInt32(unit)
                if (0xD800...0xDBFF).contains(unit) {
                    guard index + 12 <= end, bytes[index + 6] == UInt8(ascii: "\\"), bytes[index + 7] == UInt8(ascii: "u"),
                        let low = hexUnit(at: index + 8), (0xDC00...0xDFFF).contains(low)
                    else { return nil }
                    value = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                    index += 6
                }
                guard let scalar = Unicode.Scalar(value) else { return nil }
                out.append(contentsOf: UTF8.encode(scalar)!)
                index += 6
                continue
            default:
                return nil
            }
            index += 2
        }
        return out
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF), as
    /// JSON text must be. ASCII, nearly every webhook body, is checked eight bytes at a time.
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        var index = 0
        while index < count {
            while index + 8 <= count,
                UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0
            {
                index += 8
            }
            guard index < count else { return true }
            let lead = base[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            let continuations: Int
            var second: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: continuations = 1
            case 0xE0:
                continuations = 2
                second = 0xA0...0xBF
            case 0xE1...0xEC, 0xEE...0xEF: continuations = 2
            case 0xED:
                continuations = 2
                second = 0x80...0x9F
            case 0xF0:
                continuations = 3
                second = 0x90...0xBF
            case 0xF1...0xF3: continuations = 3
            case 0xF4:
                continuations = 3
                second = 0x80...0x8F
            default: return false
            }
            guard index + continuations < count, second.contains(base[index + 1]) else { return false }
            for i in (index + 2)..<(index + 1 + continuations) where base[i] & 0xC0 != 0x80 { return false }
            index += 1 + continuations
        }
        return true
    }

    /// JSON text (already validated) without its `\u0000` escapes; nil when it has none. PostgreSQL's
    /// jsonb cannot hold a NUL character (it refuses the escape with SQLSTATE 22P05), and a body refused for
    /// that would be a 400 for a prediction whose outputs are fine: the interpreted copy drops the NULs,
    /// the raw delivery keeps them.
    static func removingNULEscapes(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        // Most bodies have no backslash at all: memchr finds that out at memory speed.
        guard let base = text.baseAddress, text.count >= 6 else { return nil }
        var candidate = false
        var offset = 0
        while offset + 6 <= text.count, let hit = memchr(base + offset, Int32(UInt8(ascii: "\\")), text.count - offset - 5) {
            let index = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if text[index + 1] == UInt8(ascii: "u"), text[(index + 2)..<(index + 6)].elementsEqual("0000".utf8) {
                candidate = true
                break
            }
            offset = index + 1
        }
        guard candidate else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = 0
        var inString = false
        var removed = false
        while index < text.count {
            let byte = text[index]
            if inString, byte == UInt8(ascii: "\\"), index + 1 < text.count {
                if text[index + 1] == UInt8(ascii: "u"), index + 6 <= text.count,
                    text[(index + 2)..<(index + 6)].elementsEqual("0000".utf8)
                {
                    removed = true
                    index += 6
                    continue
                }
                // Any other escape is copied whole (its second byte may be a quote or a backslash).
                out.append(byte)
                out.append(text[index + 1])
                index += 2
                continue
            }
            if byte == UInt8(ascii: "\"") { inString.toggle() }
            out.append(byte)
            index += 1
        }
        return removed ? out : nil
    }

    /// Feeds the string's unescaped ASCII contents to `consume` in runs, without copying the whole.
    /// Only the escapes base64 text can contain are accepted: `\/`, whitespace escapes and `\u00XX`.
    func forEachUnescapedRun(_ span: StringSpan, _ consume: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        guard span.hasEscapes else {
            try consume(UnsafeBufferPointer(rebasing: bytes[span.range]))
            return
        }
        _ = try Self.unescapeRuns(UnsafeBufferPointer(rebasing: bytes[span.range]), final: true, offset: span.range.lowerBound, consume)
    }

    /// `forEachUnescapedRun` over a piece of a string's contents, for a string streamed from a file in
    /// pieces: returns how many bytes of `text` it used. Unless `final`, it stops before an escape that the
    /// end of `text` cuts off, and the caller passes those bytes again in front of the next piece. `offset`
    /// is where `text` starts in the whole body (for error offsets).
    static func unescapeRuns(
        _ text: UnsafeBufferPointer<UInt8>, final: Bool, offset: Int = 0,
        _ consume: (UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws -> Int {
        let end = text.count
        var runStart = 0
        var index = 0
        var single: UInt8 = 0
        while index < end {
            guard text[index] == UInt8(ascii: "\\") else {
                index += 1
                continue
            }
            if index > runStart { try consume(UnsafeBufferPointer(rebasing: text[runStart..<index])) }
            runStart = index
            let isUnicode = index + 1 < end && text[index + 1] == UInt8(ascii: "u")
            guard index + (isUnicode ? 6 : 2) <= end else {
                guard final else { return index }
                throw Failure(message: isUnicode ? "escape outside ASCII" : "dangling escape", offset: offset + index)
            }
            var length = 2
            switch text[index + 1] {
            case UInt8(ascii: "/"): single = UInt8(ascii: "/")
            case UInt8(ascii: "\\"): single = UInt8(ascii: "\\")
            case UInt8(ascii: "n"): single = UInt8(ascii: "\n")
            case UInt8(ascii: "r"): single = UInt8(ascii: "\r")
            case UInt8(ascii: "t"): single = UInt8(ascii: "\t")
            case UInt8(ascii: "u"):
                guard let value = UInt8(String(decoding: UnsafeBufferPointer(rebasing: text[(index + 2)..<(index + 6)]), as: UTF8.self), radix: 16)
                else { throw Failure(message: "escape outside ASCII", offset: offset + index) }
                single = value
                length = 6
            default:
                throw Failure(message: "unexpected escape", offset: offset + index)
            }
            try withUnsafePointer(to: &single) { try consume(UnsafeBufferPointer(start: $0, count: 1)) }
            index += length
            runStart = index
        }
        if index > runStart { try consume(UnsafeBufferPointer(rebasing: text[runStart..<index])) }
        return end
    }
}
