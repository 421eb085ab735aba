import Foundation
import S3

/// Time-limited GET URLs straight to the bucket, so Afterimage never streams stored bytes itself.
///
/// Presigning is local computation (SigV4 query signing with the configured credentials): a lookup of a
/// stored asset never talks to S3. The URL works for whoever holds it until it expires, which is why the
/// routes that hand them out require a bearer token.
public struct Presigner: Sendable {
    /// S3's ceiling for SigV4 query signing: seven days.
    public static let maxTTL = 604_800

    let storage: S3Client
    /// `storage.presign_ttl`: the lifetime when the caller asks for none.
    public let defaultTTL: Int

    public init(storage: S3Client, defaultTTL: Int) {
        self.storage = storage
        self.defaultTTL = min(max(defaultTTL, 1), Self.maxTTL)
    }

    /// A presigner from the `storage.*` settings alone, for commands that run without a daemon.
    public static func make(_ settings: Settings.Storage) throws -> Presigner {
        Presigner(storage: try settings.makeClient(), defaultTTL: settings.presignTTL)
    }

    public struct Signed: Sendable, Equatable {
        public let url: String
        public let expiresAt: Date
    }

    /// - Parameters:
    ///   - expires: seconds, `defaultTTL` when nil; capped at seven days (S3 refuses longer URLs).
    ///   - downloadName: makes the bucket answer `Content-Disposition: attachment` with this file name.
    public func sign(key: String, expires: Int? = nil, downloadName: String? = nil, now: Date = Date()) -> Signed {
        let seconds = min(max(expires ?? defaultTTL, 1), Self.maxTTL)
        let disposition = downloadName.map(Self.contentDisposition(filename:))
        let url = storage.presignedGetURL(key: key, expires: seconds, responseContentDisposition: disposition, date: now)
        // X-Amz-Date has whole seconds: the URL stops working at the truncated time plus the lifetime.
        let signedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        return Signed(url: url, expiresAt: signedAt.addingTimeInterval(TimeInterval(seconds)))
    }

    // MARK: Request parameters

    /// Reads `?expires=`: whole seconds, at least 1; values over seven days are capped, not refused.
    public static func parseExpires(_ text: String?) throws(LookupError) -> Int? {
        guard let text else { return nil }
        guard !text.isEmpty, text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = Int(text), value >= 1
        else {
            throw LookupError(.invalidParameter, "expires must be a whole number of seconds, at least 1")
        }
        return min(value, maxTTL)
    }

    /// Checks `?download=`: a file name, not a path, of printable characters.
    public static func validateDownloadName(_ name: String?) throws(LookupError) -> String? {
        guard let name else { return nil }
        guard !name.isEmpty, name.utf8.count <= 255,
            !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "/" || $0 == "\\" })
        else {
            throw LookupError(.invalidParameter, "download must be a file name of 1 to 255 bytes without control characters or slashes")
        }
        return name
    }

    /// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266): an ASCII fallback with quotes and
    /// non-ASCII replaced, and the exact name percent-encoded for clients that read `filename*`.
    public static func contentDisposition(filename: String) -> String {
        let fallback = String(
            String.UnicodeScalarView(
                filename.unicodeScalars.map { scalar in
                    (scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\") ? scalar : "_"
                }))
        var encoded = ""
        for byte in filename.utf8 {
            if attrChar(byte) {
                encoded.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                encoded += String(format: "%%%02X", byte)
            }
        }
        return "attachment; filename=\"\(fallback)\"; filename*=UTF-8''\(encoded)"
    }

    /// RFC 8187 attr-char.
    private static func attrChar(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$&+-.^_`|~".utf8.contains(b)
        }
    }
}
