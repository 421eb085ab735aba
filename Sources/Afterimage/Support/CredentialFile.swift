import Foundation
import Glibc
import Primitives

/// Writes one secret into a credential file the way `$CREDENTIALS_DIRECTORY` (and systemd's
/// `LoadCredential=`) expects it: the value alone, mode 0600, replaced atomically so that a daemon
/// starting meanwhile reads the old secret or the new one, never half of either.
///
/// Hand-written because Foundation's `Data.write(options: .atomic)` creates its temporary file with the
/// process umask (0644 under the usual 022) before any mode can be set, so a secret would be readable by
/// everyone for a moment; here the file is born 0600 (`O_CREAT|O_EXCL` with the mode) and renamed over.
public enum CredentialFile {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Code: String, Sendable {
            case noDirectory = "no_directory"
            case io
        }
        public let code: Code
        public let message: String
        public var description: String { message }
    }

    /// Writes `value` (no trailing newline, as `printf %s` would) to `path`. The directory must exist.
    public static func write(_ value: String, to path: String) throws(Failure) {
        let target = URL(fileURLWithPath: path)
        let directory = target.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(code: .noDirectory, message: "\(directory) is not a directory")
        }
        let temporary = directory + "/." + target.lastPathComponent + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd: Int32
        do throws(SystemCallError) {
            fd = try systemCall("cannot create a file in \(directory)") {
                open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            }
        } catch {
            throw Failure(code: .io, message: error.description)
        }
        do throws(SystemCallError) {
            defer { close(fd) }
            try writeAll(fd, Array(value.utf8), "cannot write \(temporary)")
            _ = try systemCall("cannot sync \(temporary)") { fsync(fd) }
        } catch {
            unlink(temporary)
            throw Failure(code: .io, message: error.description)
        }
        do throws(SystemCallError) {
            _ = try systemCall("cannot replace \(path)") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw Failure(code: .io, message: error.description)
        }
        // The rename is durable once the directory entry is.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
