/// Where a download's bytes go as they arrive: memory while they fit in `memoryLimit`, the spool from the
/// first byte past it (what was held is written first, and nothing more is kept in memory).
///
/// Why not always the spool: for a small output the spool file was most of the daemon's own cost per file —
/// creating, writing, renaming and unlinking it, reading it back twice (its MD5 for `Content-MD5`, then the
/// upload) and a database round trip to record it. `perf` of a 1,000 × 200 KB archive run put the kernel at
/// 46 % of the daemon's CPU, most of it those copies. A held download is uploaded from memory and reaches
/// the spool only when its upload fails (`Archiver.spill`), so a retry still never downloads again.
/// Memory stays bounded: `workers.count` downloads of at most `memoryLimit` each.
final class DownloadSink {
    /// What the download left: bytes in memory (hashed, ready to upload), or a complete spool file.
    enum Result {
        case held(Staged)
        case spooled(path: String, sha256: String, size: Int64)
    }

    private let memoryLimit: Int
    private let makeWriter: () throws -> Spool.Writer
    private var held: [UInt8] = []
    private var writer: Spool.Writer?

    /// `makeWriter` opens the spool file when the bytes outgrow `memoryLimit` (0: from the first byte).
    init(memoryLimit: Int, makeWriter: @escaping () throws -> Spool.Writer) {
        self.memoryLimit = max(0, memoryLimit)
        self.makeWriter = makeWriter
    }

    /// Bytes received so far.
    var size: Int64 { writer?.size ?? Int64(held.count) }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let writer {
            try writer.write(bytes)
            return
        }
        if held.count + bytes.count <= memoryLimit {
            held.append(contentsOf: bytes)
            return
        }
        let writer = try makeWriter()
        self.writer = writer
        do {
            try held.withUnsafeBytes { try writer.write($0) }
            held = []
            try writer.write(bytes)
        } catch {
            writer.discard()
            self.writer = nil
            throw error
        }
    }

    /// Ends the download: the held bytes with their SHA-256 and MD5, or the renamed spool file. Not durable
    /// (a download's source still exists; see `Spool.Writer.finish`).
    func finish(contentType: String?) throws -> Result {
        if let writer {
            let (path, sha256) = try writer.finish(durable: false)
            return .spooled(path: path, sha256: sha256, size: writer.size)
        }
        return .held(Staged(held: held, contentType: contentType))
    }

    /// Drops what was received (a failed download): the memory, or the part file.
    func discard() {
        writer?.discard()
        writer = nil
        held = []
    }
}
