import Crypto
import Curl
import Primitives

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

/// Bytes ready for the upload and what the upload needs to know of them: a spool file, or a small download
/// held in memory (`DownloadSink`).
struct Staged {
    enum Location {
        case spoolFile(path: String)
        case memory([UInt8])
    }

    let location: Location
    /// Lowercase hex SHA-256 of the bytes.
    let sha256: String
    let size: Int64
    /// Sent as `Content-MD5` when present (see `Spooled.md5`).
    let md5: [UInt8]?
    let contentType: String?

    init(_ spooled: Spooled) {
        location = .spoolFile(path: spooled.path)
        sha256 = spooled.sha256
        size = spooled.size
        md5 = spooled.md5
        contentType = spooled.contentType
    }

    /// Bytes held in memory, hashed here: the SHA-256 is recorded and signed, the MD5 lets the store check
    /// the bytes and its ETag confirm them without a HEAD.
    init(held bytes: [UInt8], contentType: String?) {
        location = .memory(bytes)
        sha256 = Hex.encode(SHA256.hash(data: bytes))
        size = Int64(bytes.count)
        md5 = Array(Insecure.MD5.hash(data: bytes))
        self.contentType = contentType
    }

    /// The spool file, as the queue records it; nil for bytes in memory.
    var spooled: Spooled? {
        guard case .spoolFile(let path) = location else { return nil }
        return Spooled(path: path, sha256: sha256, size: size, contentType: contentType, md5: md5)
    }

    /// The upload's body: the spool file, or the bytes themselves.
    var body: RequestBody {
        switch location {
        case .spoolFile(let path): .file(path: path, offset: 0, length: size)
        case .memory(let bytes): .bytes(bytes)
        }
    }
}
