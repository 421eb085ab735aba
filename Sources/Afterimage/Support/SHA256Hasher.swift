import Crypto
import Foundation

/// Incremental SHA-256 with a hex result, so modules that hash streams need not import Crypto's types.
struct SHA256Hasher {
    private var inner = SHA256()
    mutating func update(_ data: Data) { inner.update(data: data) }
    mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bufferPointer: bytes) }
    func hex() -> String { inner.finalize().hexString }
}
