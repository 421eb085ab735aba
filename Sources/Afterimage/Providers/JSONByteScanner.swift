import Foundation

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
                offset += 2
                continue
            }
            guard byte >= 0x20 else { throw failure("control character in a string") }
            offset += 1
        }
        throw failure("unterminated string")
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
        guard digits() > 0 else { throw failure("malformed number") }
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
        if peek() == UInt8(ascii: "}") { offset += 1; return }
        while true {
            let key = try scanString()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "}"): offset += 1; return
            default: throw failure("expected ',' or '}'")
            }
        }
    }

    /// Calls `element` with each index of an array; `element` must consume the value.
    mutating func forEachElement(depth: Int = 0, _ element: (inout JSONByteScanner, Int) throws(Failure) -> Void) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nesting deeper than \(Self.maxDepth)") }
        try expect(UInt8(ascii: "["))
        if peek() == UInt8(ascii: "]") { offset += 1; return }
        var index = 0
        while true {
            try element(&self, index)
            index += 1
            switch peek() {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "]"): offset += 1; return
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

    /// A short string's value, unescaped; nil when longer than `limit` bytes or not valid.
    func string(_ span: StringSpan, limit: Int = 4096) -> String? {
        guard span.range.count <= limit else { return nil }
        let raw = UnsafeBufferPointer(rebasing: bytes[(span.range.lowerBound - 1)..<(span.range.upperBound + 1)])
        if !span.hasEscapes { return String(validating: UnsafeBufferPointer(rebasing: bytes[span.range]), as: UTF8.self) }
        // Rare and small: let Foundation handle \u escapes and surrogate pairs.
        return (try? JSONSerialization.jsonObject(with: Data(buffer: raw), options: [.fragmentsAllowed])) as? String
    }

    /// Feeds the string's unescaped ASCII contents to `consume` in runs, without copying the whole.
    /// Only the escapes base64 text can contain are accepted: `\/`, whitespace escapes and `\u00XX`.
    func forEachUnescapedRun(_ span: StringSpan, _ consume: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        guard span.hasEscapes else {
            try consume(UnsafeBufferPointer(rebasing: bytes[span.range]))
            return
        }
        var runStart = span.range.lowerBound
        var index = span.range.lowerBound
        var single: UInt8 = 0
        while index < span.range.upperBound {
            guard bytes[index] == UInt8(ascii: "\\") else { index += 1; continue }
            if index > runStart { try consume(UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
            guard index + 1 < span.range.upperBound else { throw Failure(message: "dangling escape", offset: index) }
            var length = 2
            switch bytes[index + 1] {
            case UInt8(ascii: "/"): single = UInt8(ascii: "/")
            case UInt8(ascii: "\\"): single = UInt8(ascii: "\\")
            case UInt8(ascii: "n"): single = UInt8(ascii: "\n")
            case UInt8(ascii: "r"): single = UInt8(ascii: "\r")
            case UInt8(ascii: "t"): single = UInt8(ascii: "\t")
            case UInt8(ascii: "u"):
                guard index + 6 <= span.range.upperBound,
                      let value = UInt8(String(decoding: UnsafeBufferPointer(rebasing: bytes[(index + 2)..<(index + 6)]), as: UTF8.self), radix: 16)
                else { throw Failure(message: "escape outside ASCII", offset: index) }
                single = value
                length = 6
            default:
                throw Failure(message: "unexpected escape", offset: index)
            }
            try withUnsafePointer(to: &single) { try consume(UnsafeBufferPointer(start: $0, count: 1)) }
            index += length
            runStart = index
        }
        if index > runStart { try consume(UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
    }
}
