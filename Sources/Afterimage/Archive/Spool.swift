import Crypto
import Foundation
import Glibc
import Primitives
import Synchronization

/// Downloaded bytes wait in the spool until they are stored, so a failed upload retries from disk even
/// when the provider has deleted the source by then. Files are written as `.part` and renamed once
/// complete (and, for inline bytes, fsynced).
///
/// Names: a download's part is `asset-<id>.<claim token>.<pid>.part`, so two claims of one asset (a lease
/// that ran out while its first owner still writes) never write one file, and a leftover names its writer
/// process; every part is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing already there (a
/// symlink planted in the directory, another writer's file) is ever opened for writing. Paths read back
/// from the database are normalised before they are checked to be inside the spool (`resolve`).
public struct Spool: Sendable {
    /// Absolute and lexically normalised (no `.`, `..` or repeated slashes).
    public let directory: String

    public init(directory: String) throws {
        self.directory = Self.normalised(directory)
        do {
            try FileManager.default.createDirectory(
                atPath: self.directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw ArchiveError(.spool, "cannot create workers.spool_dir \(directory): \(error.localizedDescription)")
        }
    }

    public func finalPath(assetID: Int64) -> String { "\(directory)/asset-\(assetID).spool" }
    func partPath(assetID: Int64, claim: UUID) -> String {
        "\(directory)/asset-\(assetID).\(claim.uuidString.lowercased()).\(getpid()).part"
    }

    /// A file being written: bytes go to disk and into the hash as they arrive, memory stays flat.
    ///
    /// From its creation until its owner says otherwise (`Spool.release`, `Spool.remove`, `discard()`),
    /// both its part and its final path are claimed in `SpoolClaims`, so no sweep takes the file for an
    /// orphan while it is written or before the row that refers to it is committed.
    public final class Writer {
        let path: String
        let finalPath: String
        let descriptor: Int32
        var hasher = SHA256()
        public private(set) var size: Int64 = 0

        init(path: String, finalPath: String) throws {
            self.path = path
            self.finalPath = finalPath
            SpoolClaims.shared.claim(path)
            SpoolClaims.shared.claim(finalPath)
            do {
                descriptor = try spoolCall("cannot create \(path)") { open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
            } catch {
                SpoolClaims.shared.release(path)
                SpoolClaims.shared.release(finalPath)
                throw error
            }
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
        /// so a file torn by a power cut is downloaded again rather than uploaded. The final path stays
        /// claimed until the owner releases it.
        public func finish(durable: Bool = true) throws -> (path: String, sha256: String) {
            defer {
                close(descriptor)
                SpoolClaims.shared.release(path)
            }
            do {
                if durable { _ = try spoolCall("fsync of the spool file failed") { fsync(descriptor) } }
                _ = try spoolCall("rename of the spool file failed") { rename(path, finalPath) }
            } catch {
                unlink(path)
                SpoolClaims.shared.release(finalPath)
                throw error
            }
            return (finalPath, Hex.encode(hasher.finalize()))
        }

        public func discard() {
            close(descriptor)
            unlink(path)
            SpoolClaims.shared.release(path)
            SpoolClaims.shared.release(finalPath)
        }
    }

    /// The writer of one claim of an asset (`claim` is the claim token).
    public func writer(assetID: Int64, claim: UUID) throws -> Writer {
        try Writer(path: partPath(assetID: assetID, claim: claim), finalPath: finalPath(assetID: assetID))
    }

    /// True when `path` still holds exactly the recorded bytes (size, then SHA-256): the spool of an earlier
    /// try can be uploaded as it is. Hashing costs one read of the file, only on this retry path.
    public func isIntact(path: String, size: Int64, sha256: String) -> Bool {
        guard let path = resolve(path), let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            attributes[.type] as? FileAttributeType == .typeRegular,
            let fileSize = attributes[.size] as? NSNumber, fileSize.int64Value == size
        else { return false }
        return (try? SHA256Hasher.hexDigest(ofFile: path, length: size)) == sha256
    }

    /// The MD5 of a spool file of `size` bytes when that is at most `limit` (nil otherwise, or when it cannot
    /// be read whole): what a PUT sends as `Content-MD5`. Read back once the download is complete rather
    /// than hashed as it streams, because only then is the size known: a larger file costs nothing.
    public func md5(ofFile path: String, size: Int64, limit: Int64) -> [UInt8]? {
        guard size <= limit, let resolved = resolve(path), let handle = FileHandle(forReadingAtPath: resolved) else { return nil }
        defer { try? handle.close() }
        guard let bytes = try? handle.read(upToCount: Int(size) + 1), bytes.count == Int(size) else { return nil }
        return Array(Insecure.MD5.hash(data: bytes))
    }

    /// Removes a spool file (and its claim). A path outside the spool is left alone.
    public func remove(_ path: String) {
        guard let resolved = resolve(path) else { return }
        unlink(resolved)
        SpoolClaims.shared.release(resolved)
    }

    /// Gives up this process's claim on a finished file once a committed row refers to it (or it is
    /// somebody else's to remove): from then on the sweep decides by the row's state.
    public func release(_ path: String) {
        guard let resolved = resolve(path) else { return }
        SpoolClaims.shared.release(resolved)
    }

    /// `path` as a file directly inside the spool, normalised; nil for anything else. Paths come back
    /// from the database, where anyone with write access could have put `spool/../../etc/passwd`: the
    /// prefix is checked on the normalised path, and the file must be a plain name in the directory.
    public func resolve(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        let normalised = Self.normalised(path)
        guard normalised.hasPrefix(directory + "/") else { return nil }
        let name = normalised.dropFirst(directory.count + 1)
        guard !name.isEmpty, !name.contains("/") else { return nil }
        return normalised
    }

    /// An absolute path with `.` and `..` resolved lexically and repeated or trailing slashes dropped (no
    /// symlinks are followed: the spool's own directory is trusted configuration). A relative path is
    /// taken from the current directory.
    static func normalised(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for part in absolute.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// The spool files this process is writing, or has written but not yet recorded: a sweep never removes
/// them. One registry per process (every `Spool` value shares it: the daemon's intake, workers and
/// reconciler each hold one). Counted, since two claims of one asset share a final path.
final class SpoolClaims: Sendable {
    static let shared = SpoolClaims()
    private let paths = Mutex<[String: Int]>([:])

    func claim(_ path: String) {
        paths.withLock { $0[path, default: 0] += 1 }
    }

    func release(_ path: String) {
        paths.withLock { paths in
            guard let count = paths[path] else { return }
            paths[path] = count > 1 ? count - 1 : nil
        }
    }

    func isClaimed(_ path: String) -> Bool { paths.withLock { $0[path] != nil } }
}
