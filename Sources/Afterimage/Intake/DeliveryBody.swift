import Foundation
import MicroHTTP
import Primitives

/// A webhook body as intake gets it: bytes in memory (small bodies), or the file the HTTP server spilled
/// a large one to while it arrived (`Request.bodyFile`, for routes registered with `bodyAsFile`).
///
/// Why one type for both: intake that streams (decodes base64 into the spool, sends the raw body to
/// `deliveries.body` with COPY) reads either the same way, piece by piece, so a 60 MiB body never has to be
/// in memory, and small bodies take the very same path (one path, tested by every delivery).
public enum DeliveryBody: Sendable {
    case bytes([UInt8])
    case file(BodyFile)

    /// The request's body: its file when the server handed one over, else its bytes.
    public init(_ request: Request) {
        self = request.bodyFile.map { .file($0) } ?? .bytes(request.body)
    }

    public var count: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .file(let file): file.size
        }
    }

    /// Up to `buffer.count` bytes from `offset`; the number read (0 at the end).
    public func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        switch self {
        case .bytes(let bytes):
            let count = min(buffer.count, max(0, bytes.count - offset))
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
            }
            return count
        case .file(let file):
            return try file.read(at: offset, into: buffer)
        }
    }

    /// Hands `range` of the body to `consume` in pieces of at most `chunkSize` bytes, through one buffer
    /// (a piece is valid only during its call). In-memory bytes are handed over in place.
    public func forEachPiece(
        of range: Range<Int>, chunkSize: Int = 256 << 10,
        _ consume: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range outside the body")
        switch self {
        case .bytes(let bytes):
            try bytes.withUnsafeBytes { all in
                var offset = range.lowerBound
                while offset < range.upperBound {
                    let end = min(range.upperBound, offset + chunkSize)
                    try consume(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
                    offset = end
                }
            }
        case .file(let file):
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
            defer { buffer.deallocate() }
            var offset = range.lowerBound
            while offset < range.upperBound {
                let wanted = min(chunkSize, range.upperBound - offset)
                let read = try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]))
                guard read > 0 else { throw SystemCallError("read a spilled body back (it is shorter than received)", errno: EIO) }
                try consume(UnsafeRawBufferPointer(rebasing: buffer[0..<read]))
                offset += read
            }
        }
    }
}
