import Curl
import Foundation

/// What S3 says about a stored object (HeadObject, or the headers of a GetObject).
public struct ObjectInfo: Sendable, Equatable {
    public let size: Int64
    /// As the server sent it, quotes included (`"9b2cf535f27731c974343645a3985328"`).
    public let etag: String?
    public let contentType: String?
    /// `x-amz-meta-*` headers, names lowercased and without the prefix.
    public let metadata: [String: String]
    public let lastModified: String?

    public init(size: Int64, etag: String?, contentType: String?, metadata: [String: String], lastModified: String?) {
        self.size = size
        self.etag = etag
        self.contentType = contentType
        self.metadata = metadata
        self.lastModified = lastModified
    }

    init(headers: HTTPHeaders, fallbackSize: Int64) {
        var metadata: [String: String] = [:]
        for (name, value) in headers.all {
            let lower = name.lowercased()
            if lower.hasPrefix("x-amz-meta-") { metadata[String(lower.dropFirst("x-amz-meta-".count))] = value.headerTrimmed }
        }
        self.init(
            size: headers.trimmed("content-length").flatMap { Int64($0) } ?? fallbackSize,
            etag: headers.trimmed("etag"), contentType: headers.trimmed("content-type"), metadata: metadata,
            lastModified: headers.trimmed("last-modified"))
    }
}

extension HTTPHeaders {
    /// A header value without surrounding whitespace or line ends. Defensive: a header line's
    /// trailing CRLF must never end up in an ETag or a content type we store.
    func trimmed(_ name: String) -> String? { self[name]?.headerTrimmed }
}

extension String {
    var headerTrimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
