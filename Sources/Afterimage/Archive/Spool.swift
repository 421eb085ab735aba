import Crypto
import Foundation
import Glibc
import Primitives

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
            descriptor = try spoolCall("cannot create \(path)") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            // ENOSPC lands here: a full disk is an error that says so, and the asset retries.
            try spoolWriteAll(descriptor, bytes, "writing the spool file failed")
            hasher.update(bufferPointer: bytes)
            size += Int64(bytes.count)
        }

        /// Renames into place; returns the path and the hex SHA-256. `durable` fsyncs first: required for
        /// inline bytes (the spool holds the only copy once the webhook is acknowledged), skipped for
        /// downloads, whose source still exists and whose spool is re-hashed before any reuse (`isIntact`),
        /// so a file torn by a power cut is downloaded again rather than uploaded.
        public func finish(durable: Bool = true) throws -> (path: String, sha256: String) {
            defer { close(descriptor) }
            if durable { _ = try spoolCall("fsync of the spool file failed") { fsync(descriptor) } }
            _ = try spoolCall("rename of the spool file failed") { rename(path, finalPath) }
            return (finalPath, Hex.encode(hasher.finalize()))
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

/// Errors of the archive pipeline, with a code that decides what happens to the asset next.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case spool, disallowedURL = "disallowed_url", blockedAddress = "blocked_address", tooLarge = "too_large"
        case sourceStatus = "source_status", transport, storage, leaseLost = "lease_lost", aborted
        /// The source has the file but not yet (an async generation answering 202): poll again.
        case notReady = "not_ready"
        /// Inline bytes whose only copies (spool file, recorded delivery) are gone: nothing to retry.
        case inlineLost = "inline_lost"
    }
    public let code: Code
    public let message: String
    /// HTTP status from the source, when there was one.
    public var status: Int?
    /// The earliest sensible next try, in seconds (the source's Retry-After, or a poll interval).
    public var retryAfter: TimeInterval?

    public init(_ code: Code, _ message: String, status: Int? = nil, retryAfter: TimeInterval? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
