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
            if lower.hasPrefix("x-amz-meta-") { metadata[String(lower.dropFirst("x-amz-meta-".count))] = value }
        }
        self.init(
            size: headers["content-length"].flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) } ?? fallbackSize,
            etag: headers["etag"], contentType: headers["content-type"], metadata: metadata,
            lastModified: headers["last-modified"])
    }
}
