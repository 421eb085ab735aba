import Foundation
import Glibc

/// Inline results (bytes that came inside a webhook body) are spooled before the asset row exists, so
/// their files are named by a random id and the writing process, not by asset id. Their suffix tells the
/// sweep that such a file may be the only copy of its bytes on this machine; the intake releases its
/// claim on it (`Spool.release`) once the row that refers to it is committed, or removes it.
extension Spool {
    static let inlineSuffix = ".inline"

    /// A writer for bytes decoded from a webhook body; `finish()` leaves `inline-<uuid>.<pid>.inline`.
    public func inlineWriter() throws -> Writer {
        let name = "inline-\(UUID().uuidString.lowercased()).\(getpid())"
        return try Writer(path: "\(directory)/\(name).part", finalPath: "\(directory)/\(name)\(Self.inlineSuffix)")
    }

    /// fsyncs the directory, so files renamed into it survive a power cut: the 2xx for an inline body
    /// promises that its bytes are on disk, names included.
    public func syncDirectory() throws {
        let descriptor = try spoolCall("cannot open the spool directory") { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(descriptor) }
        _ = try spoolCall("fsync of the spool directory failed") { fsync(descriptor) }
    }
}
