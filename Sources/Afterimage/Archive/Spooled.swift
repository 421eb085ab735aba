import Curl

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

/// Bytes ready for the upload: a spool file, or a small download held in memory (`DownloadSink`).
enum Staged {
    case spooled(Spooled)
    case held(HeldDownload)

    var size: Int64 {
        switch self {
        case .spooled(let spooled): spooled.size
        case .held(let held): held.size
        }
    }

    var sha256: String {
        switch self {
        case .spooled(let spooled): spooled.sha256
        case .held(let held): held.sha256
        }
    }

    var md5: [UInt8]? {
        switch self {
        case .spooled(let spooled): spooled.md5
        case .held(let held): held.md5
        }
    }

    var contentType: String? {
        switch self {
        case .spooled(let spooled): spooled.contentType
        case .held(let held): held.contentType
        }
    }

    /// The upload's body: the spool file, or the bytes themselves.
    var body: RequestBody {
        switch self {
        case .spooled(let spooled): .file(path: spooled.path, offset: 0, length: spooled.size)
        case .held(let held): .bytes(held.bytes)
        }
    }
}
