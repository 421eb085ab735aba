import Crypto
import Foundation
import Primitives

/// Incremental SHA-256 with a hex result, so modules that hash streams need not import Crypto's types.
struct SHA256Hasher {
    private var inner = SHA256()
    mutating func update(_ data: Data) { inner.update(data: data) }
    mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bufferPointer: bytes) }
    func hex() -> String { Hex.encode(inner.finalize()) }

    /// SHA-256 of `length` bytes of a file from `offset`, read 1 MiB at a time (memory stays flat).
    /// Throws when the file is shorter than that: a spool that lost bytes must never pass as intact.
    static func hexDigest(ofFile path: String, offset: Int64 = 0, length: Int64) throws -> String {
        var unused = SHA256Hasher()
        return try hexDigest(ofFile: path, offset: offset, length: length, feeding: &unused)
    }

    /// The same, also feeding every byte read to `other` (the hash of a whole file, built part by part).
    static func hexDigest(ofFile path: String, offset: Int64 = 0, length: Int64, feeding other: inout SHA256Hasher) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        var hasher = SHA256Hasher()
        var remaining = length
        while remaining > 0 {
            let chunk = try handle.read(upToCount: Int(min(remaining, 1 << 20))) ?? Data()
            guard !chunk.isEmpty else { throw ArchiveError(.spool, "the spool file is shorter than recorded") }
            hasher.update(chunk)
            other.update(chunk)
            remaining -= Int64(chunk.count)
        }
        return hasher.hex()
    }
}
