/// Bytes waiting in the spool to be uploaded: where they are, what they are (SHA-256 and size, taken
/// while they were written) and as what they will be stored (content type, when known).
///
/// One value for what a download, a decoded inline output and a polled result all leave behind, so the
/// archiver, the intake and the queue pass it around whole instead of as four loose fields.
public struct Spooled: Sendable, Equatable {
    public let path: String
    /// Lowercase hex SHA-256 of the file's bytes.
    public let sha256: String
    public let size: Int64
    public let contentType: String?
    /// The MD5 of a downloaded file of up to 1 MiB (`Archiver.contentMD5Limit`): sent as `Content-MD5`.
    /// Nil for anything else (larger files, a spool file left by an earlier try, inline bytes), whose
    /// upload is checked with a HEAD instead.
    public let md5: [UInt8]?

    public init(path: String, sha256: String, size: Int64, contentType: String?, md5: [UInt8]? = nil) {
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.contentType = contentType
        self.md5 = md5
    }
}
