/// A JSON body read once, piece by piece, into a small copy of itself in which every long string is
/// replaced by a placeholder: the structure and the short values a parser needs stay, the megabytes of
/// base64 stay in the body (in memory or in the file the HTTP server spilled it to), located by range.
///
/// Why: a Stability result is tens of MiB of base64 inside a few hundred bytes of JSON. Parsing the body
/// itself would need all of it in memory; the skeleton needs the structure only. `StabilityBody.parse`
/// runs on the skeleton unchanged, and a base64 field it finds is decoded straight from the body into the
/// spool (`InlineSpooler`), so a 60 MiB body costs a few hundred KiB of memory.
///
/// The skeleton keeps every byte outside strings, and every string of at most `keepLimit` bytes (escaped
/// form) as it is; a longer string becomes `placeholderLength` bytes of `*`, longer than any short field a
/// parser reads (ids, seeds, finish reasons: at most 256 bytes), so such a field is refused as too long
/// just as it would have been. Strings are checked while they stream (escapes, surrogate pairs, control
/// characters), so an elided one is as valid as one the parser saw.
struct JSONSkeleton {
    struct Failure: Error, CustomStringConvertible, Equatable {
        let message: String
        /// Where in the body.
        let offset: Int
        /// False when the body may be valid JSON but is too much structure to hold (`maxBytes`).
        var isSyntax = true
        var description: String { "\(message) at byte \(offset)" }
    }

    /// Strings longer than this (escaped, between the quotes) are left in the body.
    static let keepLimit = 1024
    static let placeholderLength = 300
    static let placeholderByte = UInt8(ascii: "*")
    /// The most a skeleton may grow to: a genuine result has a few KiB of structure. A body that is
    /// mostly structure (numbers, short strings) is refused as unparseable rather than held in memory.
    static let maxBytes = 1 << 20

    /// A long string left in the body: its contents' byte range there, and whether it has escapes.
    struct Elision: Equatable {
        let range: Range<Int>
        let hasEscapes: Bool
    }

    /// Where a string the parser found really is.
    enum Text: Equatable {
        /// In the skeleton, as the parser's span says.
        case inSkeleton(JSONByteScanner.StringSpan)
        /// In the body.
        case inBody(Elision)
    }

    private(set) var bytes: [UInt8] = []
    /// Elided strings, by the skeleton offset where their placeholder's contents begin.
    private(set) var elided: [Int: Elision] = [:]

    /// The location of a string span the parser found in `bytes`.
    func locate(_ span: JSONByteScanner.StringSpan) -> Text {
        if span.range.count == Self.placeholderLength, let elision = elided[span.range.lowerBound] { return .inBody(elision) }
        return .inSkeleton(span)
    }

    /// Reads `body` once. Throws `Failure` for a string that is not valid JSON (or a skeleton past
    /// `maxBytes`); read errors of the body's file are rethrown as they are.
    init(reading body: DeliveryBody, pieceSize: Int = 256 << 10) throws {
        var builder = Builder()
        var offset = 0
        try body.forEachPiece(of: 0..<body.count, chunkSize: pieceSize) { piece in
            try builder.consume(piece.assumingMemoryBound(to: UInt8.self), at: offset)
            offset += piece.count
        }
        builder.finish()
        bytes = builder.skeleton
        elided = builder.elided
    }

    /// The streaming state machine. Outside strings bytes are copied; inside, a string is buffered up to
    /// `keepLimit` bytes and then dropped for a placeholder, its escapes checked byte by byte.
    private struct Builder {
        enum State {
            case outside
            case inString
            /// After a backslash.
            case escape
            /// `\u` and this many hex digits so far (value so far); `low` when it is the second half of a
            /// surrogate pair.
            case unicode(digits: Int, value: UInt16, low: Bool)
            /// A high surrogate's escape ended: a `\` must follow (then `u`, then a low surrogate).
            case needLowBackslash
            case needLowU
        }

        var skeleton: [UInt8] = []
        var elided: [Int: Elision] = [:]
        var state = State.outside
        /// The current string's contents while short enough to keep.
        var kept: [UInt8] = []
        var elidedNow = false
        var hasEscapes = false
        var stringStart = 0

        mutating func consume(_ piece: UnsafeBufferPointer<UInt8>, at base: Int) throws {
            var index = 0
            let count = piece.count
            while index < count {
                switch state {
                case .outside:
                    // Copy up to and including the next quote.
                    let start = index
                    while index < count, piece[index] != UInt8(ascii: "\"") { index += 1 }
                    if index < count { index += 1 }
                    skeleton.append(contentsOf: UnsafeBufferPointer(rebasing: piece[start..<index]))
                    if skeleton.count > JSONSkeleton.maxBytes {
                        throw Failure(
                            message: "more than \(JSONSkeleton.maxBytes) bytes of JSON outside long strings",
                            offset: base + index, isSyntax: false)
                    }
                    if piece[index - 1] == UInt8(ascii: "\""), index > start {
                        state = .inString
                        kept.removeAll(keepingCapacity: true)
                        elidedNow = false
                        hasEscapes = false
                        stringStart = base + index
                    }
                case .inString:
                    // The plain run up to the next quote, backslash or control character.
                    let start = index
                    while index < count {
                        let byte = piece[index]
                        if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                        index += 1
                    }
                    keep(UnsafeBufferPointer(rebasing: piece[start..<index]))
                    guard index < count else { break }
                    let byte = piece[index]
                    index += 1
                    if byte == UInt8(ascii: "\"") {
                        endString(at: base + index - 1)
                    } else if byte == UInt8(ascii: "\\") {
                        hasEscapes = true
                        keep(byte)
                        state = .escape
                    } else {
                        throw Failure(message: "control character in a string", offset: base + index - 1)
                    }
                case .escape:
                    let byte = piece[index]
                    index += 1
                    keep(byte)
                    switch byte {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                        UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        state = .inString
                    case UInt8(ascii: "u"):
                        state = .unicode(digits: 0, value: 0, low: false)
                    default:
                        throw Failure(message: "invalid escape", offset: base + index - 1)
                    }
                case .unicode(let digits, let value, let low):
                    let byte = piece[index]
                    index += 1
                    keep(byte)
                    guard let digit = Self.hexValue(byte) else { throw Failure(message: "malformed \\u escape", offset: base + index - 1) }
                    let unit = value << 4 | UInt16(digit)
                    guard digits == 3 else {
                        state = .unicode(digits: digits + 1, value: unit, low: low)
                        break
                    }
                    switch (low, unit) {
                    case (false, 0xD800...0xDBFF): state = .needLowBackslash
                    case (false, 0xDC00...0xDFFF): throw Failure(message: "unpaired surrogate escape", offset: base + index - 1)
                    case (true, 0xDC00...0xDFFF), (false, _): state = .inString
                    case (true, _): throw Failure(message: "unpaired surrogate escape", offset: base + index - 1)
                    }
                case .needLowBackslash:
                    let byte = piece[index]
                    index += 1
                    guard byte == UInt8(ascii: "\\") else { throw Failure(message: "unpaired surrogate escape", offset: base + index - 1) }
                    keep(byte)
                    state = .needLowU
                case .needLowU:
                    let byte = piece[index]
                    index += 1
                    guard byte == UInt8(ascii: "u") else { throw Failure(message: "unpaired surrogate escape", offset: base + index - 1) }
                    keep(byte)
                    state = .unicode(digits: 0, value: 0, low: true)
                }
            }
        }

        /// The body ended. Inside a string, what was kept (or the placeholder) goes in without a closing
        /// quote: the parser then reports the unterminated string as it always did.
        mutating func finish() {
            guard case .outside = state else {
                skeleton.append(contentsOf: elidedNow ? placeholder : kept)
                return
            }
        }

        private var placeholder: [UInt8] { [UInt8](repeating: JSONSkeleton.placeholderByte, count: JSONSkeleton.placeholderLength) }

        private mutating func keep(_ run: UnsafeBufferPointer<UInt8>) {
            guard !elidedNow, !run.isEmpty else { return }
            if kept.count + run.count > JSONSkeleton.keepLimit {
                elidedNow = true
                kept.removeAll(keepingCapacity: true)
            } else {
                kept.append(contentsOf: run)
            }
        }

        private mutating func keep(_ byte: UInt8) {
            guard !elidedNow else { return }
            if kept.count + 1 > JSONSkeleton.keepLimit {
                elidedNow = true
                kept.removeAll(keepingCapacity: true)
            } else {
                kept.append(byte)
            }
        }

        /// The closing quote is at `quote` (a body offset).
        private mutating func endString(at quote: Int) {
            if elidedNow {
                elided[skeleton.count] = Elision(range: stringStart..<quote, hasEscapes: hasEscapes)
                skeleton.append(contentsOf: placeholder)
            } else {
                skeleton.append(contentsOf: kept)
            }
            skeleton.append(UInt8(ascii: "\""))
            state = .outside
        }

        private static func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
    }
}

extension JSONSkeleton.Elision {
    /// Hands the string's unescaped contents to `consume` run by run, read from `body` in pieces. An escape
    /// cut by the end of a piece is carried over to the next one.
    func forEachUnescapedRun(
        in body: DeliveryBody, pieceSize: Int = 256 << 10,
        _ consume: (UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        guard hasEscapes else {
            try body.forEachPiece(of: range, chunkSize: pieceSize) { piece in try consume(piece.assumingMemoryBound(to: UInt8.self)) }
            return
        }
        var carry: [UInt8] = []
        var offset = range.lowerBound
        try body.forEachPiece(of: range, chunkSize: pieceSize) { raw in
            let piece = raw.assumingMemoryBound(to: UInt8.self)
            if carry.isEmpty {
                let used = try JSONByteScanner.unescapeRuns(piece, final: false, offset: offset, consume)
                carry = Array(piece[used...])
                offset += used
            } else {
                // Rare: only when an escape straddles two pieces.
                let joined = carry + Array(piece)
                let used = try joined.withUnsafeBufferPointer { try JSONByteScanner.unescapeRuns($0, final: false, offset: offset, consume) }
                carry = Array(joined[used...])
                offset += used
            }
        }
        if !carry.isEmpty {
            _ = try carry.withUnsafeBufferPointer { try JSONByteScanner.unescapeRuns($0, final: true, offset: offset, consume) }
        }
    }
}
