/// Decodes base64 text fed in pieces and hands the bytes to a sink in fixed-size chunks, so a 40 MiB
/// base64 field becomes a 30 MiB spool file with 64 KiB of memory, never a decoded copy of the whole.
///
/// Accepts the standard and the URL-safe alphabets (apps re-encode results with either), skips ASCII
/// whitespace (MIME line breaks), and takes padding as optional. Anything else is refused, because a
/// corrupt field must not become a plausible-looking file.
final class Base64StreamDecoder {
    struct Failure: Error, CustomStringConvertible, Equatable {
        let message: String
        var description: String { message }
    }

    static let chunkSize = 64 << 10
    /// Bytes kept from the start of the output, enough to recognise the file type.
    static let headSize = 16

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private let buffer: UnsafeMutablePointer<UInt8>
    private var buffered = 0
    private var quantum: UInt32 = 0
    private var quantumLength = 0
    private var paddingSeen = 0
    private(set) var decodedCount: Int64 = 0
    /// The first bytes decoded, for content sniffing.
    private(set) var head: [UInt8] = []

    /// `sink` receives every decoded chunk in order; a throwing sink stops the decoding with its error.
    init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.sink = sink
        buffer = .allocate(capacity: Self.chunkSize)
    }

    deinit { buffer.deallocate() }

    // 0...63: a digit; 64: padding; 65: whitespace; 255: invalid.
    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 255, count: 256)
        for (index, char) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(char)] = UInt8(index)
        }
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        table[Int(UInt8(ascii: "="))] = 64
        for space in [UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t")] { table[Int(space)] = 65 }
        return table
    }()

    /// Decodes the next piece of text. Pieces may split a quantum anywhere.
    func decode(_ text: UnsafeBufferPointer<UInt8>) throws {
        try Self.table.withUnsafeBufferPointer { table in
            for char in text {
                let value = table[Int(char)]
                if value < 64 {
                    guard paddingSeen == 0 else { throw Failure(message: "base64 continues after its padding") }
                    quantum = quantum << 6 | UInt32(value)
                    quantumLength += 1
                    if quantumLength == 4 {
                        try emit(
                            UInt8(truncatingIfNeeded: quantum >> 16), UInt8(truncatingIfNeeded: quantum >> 8),
                            UInt8(truncatingIfNeeded: quantum), count: 3)
                        quantum = 0
                        quantumLength = 0
                    }
                } else if value == 64 {
                    // "=" only ends a quantum of 2 or 3 digits, and at most two of them.
                    guard quantumLength + paddingSeen >= 2, quantumLength + paddingSeen < 4 else {
                        throw Failure(message: "misplaced base64 padding")
                    }
                    paddingSeen += 1
                } else if value == 255 {
                    throw Failure(message: "a byte that is not base64 (0x\(String(char, radix: 16)))")
                }
            }
        }
    }

    func decode(_ text: [UInt8]) throws {
        try text.withUnsafeBufferPointer { try decode($0) }
    }

    /// Ends the text: flushes the last partial quantum and everything buffered. Returns the decoded size.
    @discardableResult
    func finish() throws -> Int64 {
        switch quantumLength {
        case 0: break
        case 1: throw Failure(message: "base64 ends in the middle of a byte")
        case 2: try emit(UInt8(truncatingIfNeeded: quantum >> 4), 0, 0, count: 1)
        default: try emit(UInt8(truncatingIfNeeded: quantum >> 10), UInt8(truncatingIfNeeded: quantum >> 2), 0, count: 2)
        }
        if paddingSeen > 0, quantumLength + paddingSeen != 4 { throw Failure(message: "misplaced base64 padding") }
        quantumLength = 0
        try flush()
        return decodedCount
    }

    @inline(__always)
    private func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8, count: Int) throws {
        if buffered + 3 > Self.chunkSize { try flush() }
        buffer[buffered] = a
        if count > 1 { buffer[buffered + 1] = b }
        if count > 2 { buffer[buffered + 2] = c }
        buffered += count
        decodedCount += Int64(count)
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        if head.count < Self.headSize {
            head.append(contentsOf: UnsafeBufferPointer(start: buffer, count: min(buffered, Self.headSize - head.count)))
        }
        try sink(UnsafeRawBufferPointer(start: buffer, count: buffered))
        buffered = 0
    }
}
