import Crypto
import Foundation

/// Downloaded bytes wait in the spool until they are stored, so a failed upload retries from disk even
/// when the provider has deleted the source by then. Files are written as `.part` (named after the
/// writing process, so a crashed writer's leftovers are recognisable) and renamed once complete and
/// fsynced.
public struct Spool: Sendable {
    public let directory: String

    public init(directory: String) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ArchiveError(.spool, "cannot create workers.spool_dir \(directory): \(error.localizedDescription)")
        }
    }

    public func finalPath(assetID: Int64) -> String { "\(directory)/asset-\(assetID).spool" }
    func partPath(assetID: Int64) -> String { "\(directory)/asset-\(assetID).\(getpid()).part" }

    /// A file being written: bytes go to disk and into the hash as they arrive, memory stays flat.
    public final class Writer {
        let path: String
        let finalPath: String
        let descriptor: Int32
        var hasher = SHA256()
        public private(set) var size: Int64 = 0

        init(path: String, finalPath: String) throws {
            self.path = path
            self.finalPath = finalPath
            descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw ArchiveError(.spool, "cannot create \(path): \(String(cString: strerror(errno)))") }
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            var offset = 0
            while offset < bytes.count {
                let n = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    // ENOSPC lands here: a full disk is an error that says so, and the asset retries.
                    throw ArchiveError(.spool, "writing the spool file failed: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
            hasher.update(bufferPointer: bytes)
            size += Int64(bytes.count)
        }

        /// Renames into place; returns the path and the hex SHA-256. `durable` fsyncs first: required for
        /// inline bytes (the spool holds the only copy once the webhook is acknowledged), skipped for
        /// downloads, whose source still exists and whose spool is re-hashed before any reuse (`isIntact`),
        /// so a file torn by a power cut is downloaded again rather than uploaded.
        public func finish(durable: Bool = true) throws -> (path: String, sha256: String) {
            defer { close(descriptor) }
            guard !durable || fsync(descriptor) == 0 else { throw ArchiveError(.spool, "fsync of the spool file failed: \(String(cString: strerror(errno)))") }
            guard rename(path, finalPath) == 0 else { throw ArchiveError(.spool, "rename of the spool file failed: \(String(cString: strerror(errno)))") }
            return (finalPath, hasher.finalize().hexString)
        }

        public func discard() {
            close(descriptor)
            unlink(path)
        }
    }

    public func writer(assetID: Int64) throws -> Writer {
        try Writer(path: partPath(assetID: assetID), finalPath: finalPath(assetID: assetID))
    }

    /// True when `path` still holds exactly the recorded bytes (size, then SHA-256): the spool of an earlier
    /// try can be uploaded as it is. Hashing costs one read of the file, only on this retry path.
    public func isIntact(path: String, size: Int64, sha256: String) -> Bool {
        guard path.hasPrefix(directory + "/"), let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let fileSize = attributes[.size] as? NSNumber, fileSize.int64Value == size else { return false }
        return (try? SHA256Hasher.hexDigest(ofFile: path, length: size)) == sha256
    }

    public func remove(_ path: String) {
        guard path.hasPrefix(directory + "/") else { return }
        unlink(path)
    }

    /// At start: removes `.part` files whose writer process is gone, and `.spool` files no asset refers to.
    public func cleanOrphans(referenced: Set<String>) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var removed = 0
        for name in names {
            let path = "\(directory)/\(name)"
            if name.hasSuffix(".part") {
                let parts = name.split(separator: ".")
                if parts.count >= 3, let pid = Int32(parts[parts.count - 2]), pid != getpid(), kill(pid, 0) == 0 { continue }
                unlink(path); removed += 1
            } else if name.hasSuffix(".spool"), !referenced.contains(path) {
                unlink(path); removed += 1
            } else if name.hasSuffix(Self.inlineSuffix), !referenced.contains(path) {
                // Inline bytes from a webhook body: kept while their writer (an intake between fsync and
                // COMMIT) is alive; unreferenced after that means the delivery was never acknowledged.
                let parts = name.split(separator: ".")
                if parts.count >= 3, let pid = Int32(parts[parts.count - 2]), kill(pid, 0) == 0 { continue }
                unlink(path); removed += 1
            }
        }
        return removed
    }
}

extension SHA256.Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
