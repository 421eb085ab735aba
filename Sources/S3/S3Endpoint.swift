import Foundation

/// Where the bucket lives and how its URLs are spelled.
///
/// Path-style (`http://127.0.0.1:8333/bucket/key`) is what SeaweedFS, MinIO and most self-hosted
/// stores expect; virtual-hosted (`https://bucket.s3.us-east-1.amazonaws.com/key`) is AWS's
/// preferred form and what Tigris and R2 also accept. The key prefix is carried here for the
/// caller to build keys with (`prefix + provider/...`); `objectURL` takes the full key.
public struct S3Endpoint: Sendable {
    /// `scheme://host[:port]`, no trailing slash.
    public let endpoint: String
    public let region: String
    public let bucket: String
    public let pathStyle: Bool
    public let prefix: String

    let parts: URLParts
    /// What every object URL shares, computed once: `scheme://host[:port]`, the path up to the key's
    /// slash, and the Host header. Presigning builds from these instead of parsing a URL per answer.
    let objectOrigin: String
    let objectPathPrefix: String
    let objectHost: String

    public init(endpoint: String, region: String, bucket: String, pathStyle: Bool = true, prefix: String = "") throws(S3Error) {
        let trimmed = Self.trimmed(endpoint)
        if let problem = Self.endpointProblem(endpoint) {
            throw S3Error(.invalidConfiguration, "storage endpoint \(problem), got \"\(Self.redactUserInfo(trimmed))\"")
        }
        let parts = URLParts(trimmed)!  // endpointProblem parsed it
        guard !region.isEmpty, region.utf8.allSatisfy({ S3URIEncoding.isUnreserved($0) }) else {
            throw S3Error(.invalidConfiguration, "storage region \"\(region)\" is empty or has characters a region cannot have")
        }
        try Self.validate(bucket: bucket, pathStyle: pathStyle, https: parts.scheme == "https")
        guard prefix.utf8.count <= 512 else {
            throw S3Error(.invalidConfiguration, "storage prefix is longer than 512 bytes")
        }
        self.endpoint = parts.origin
        self.region = region
        self.bucket = bucket
        self.pathStyle = pathStyle
        self.prefix = prefix
        self.parts = parts
        let root =
            pathStyle
            ? parts.origin + "/" + S3URIEncoding.encode(bucket, encodeSlash: true)
            : "\(parts.scheme)://\(bucket).\(parts.host)\(parts.port.map { ":\($0)" } ?? "")"
        let rootParts = URLParts(root + "/")!  // built from validated parts: always parses
        objectOrigin = rootParts.origin
        objectPathPrefix = String(rootParts.path.dropLast())
        objectHost = rootParts.hostHeader
    }

    /// Why `endpoint` cannot be a storage endpoint, or nil when it can: it must be `scheme://host[:port]`
    /// with scheme http or https, nothing more (no path, query, fragment or userinfo). The reason never
    /// repeats the value (which could carry a credential). The configuration loader refuses such a
    /// `storage.endpoint` with this reason, so a value it accepts is one the client accepts.
    public static func endpointProblem(_ endpoint: String) -> String? {
        let trimmed = trimmed(endpoint)
        guard let parts = URLParts(trimmed), parts.scheme == "http" || parts.scheme == "https", !parts.host.isEmpty else {
            return "must be an http:// or https:// URL"
        }
        guard parts.path.isEmpty, parts.query == nil, !trimmed.contains("@"), !trimmed.contains("#") else {
            return "must be scheme://host[:port] only (no path, query or user)"
        }
        return nil
    }

    private static func trimmed(_ endpoint: String) -> String {
        var trimmed = endpoint.trimmingCharacters(in: .whitespaces)
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    /// The canonical (encoded-once) path of `key`, as `objectURL` spells it.
    func objectPath(key: String) -> String {
        objectPathPrefix + "/" + S3URIEncoding.encode(key, encodeSlash: false)
    }

    /// The URL of `key` (the full key, prefix included), encoded once with its slashes kept.
    public func objectURL(key: String) -> String {
        objectOrigin + objectPath(key: key)
    }

    /// The bucket itself (HeadBucket, listings).
    public var bucketURL: String { pathStyle ? bucketRoot : bucketRoot + "/" }

    private var bucketRoot: String {
        if pathStyle { return endpoint + "/" + S3URIEncoding.encode(bucket, encodeSlash: true) }
        let port = parts.port.map { ":\($0)" } ?? ""
        return "\(parts.scheme)://\(bucket).\(parts.host)\(port)"
    }

    /// S3 bucket naming rules, strict where the name becomes part of a host name.
    static func validate(bucket: String, pathStyle: Bool, https: Bool) throws(S3Error) {
        let bytes = Array(bucket.utf8)
        guard !bytes.isEmpty, bytes.count <= 255,
            bytes.allSatisfy({ S3URIEncoding.isUnreserved($0) })
        else {
            throw S3Error(.invalidConfiguration, "storage bucket \"\(bucket)\" is empty, too long or has characters a bucket name cannot have")
        }
        if !pathStyle {
            let dnsSafe =
                (3...63).contains(bytes.count)
                && bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E }
                && bytes.first != 0x2D && bytes.last != 0x2D
            guard dnsSafe else {
                throw S3Error(.invalidConfiguration, "storage bucket \"\(bucket)\" cannot be used in a host name: set storage.path_style = true")
            }
            guard !(https && bucket.contains(".")) else {
                throw S3Error(
                    .invalidConfiguration,
                    "storage bucket \"\(bucket)\" has dots, which break TLS certificate matching for virtual-hosted URLs: set storage.path_style = true"
                )
            }
        }
    }

    private static func redactUserInfo(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url[schemeEnd.upperBound...].firstIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + "…@" + url[url.index(after: at)...]
    }
}
