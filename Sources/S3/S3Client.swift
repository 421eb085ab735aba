import Crypto
import Curl
import Foundation
import Primitives
import Synchronization

/// Object operations on one bucket, signed with our SigV4 signer and sent with libcurl.
///
/// Sendable and meant to be shared by all workers: each call borrows an idle `CurlSession` (one easy
/// handle, so connections are kept alive between calls) or makes one, and gives it back afterwards;
/// concurrent calls never share a session. Every request carries the real `x-amz-content-sha256`
/// of its payload, so the store checks the bytes it receives.
public final class S3Client: Sendable {
    public let endpoint: S3Endpoint
    let signer: SigV4Signer
    let options: CurlOptions
    private let idleSessions = Mutex<[CurlSession]>([])

    /// Idle sessions kept for reuse; more concurrent callers than this get sessions that are closed
    /// after their call.
    static let maxIdleSessions = 16
    /// Bound on S3's XML answers (UploadId, CompleteMultipartUpload result).
    static let maxXMLResponseBytes: Int64 = 1 << 20

    /// Curl options for talking to a store: http and https (self-hosted stores on a LAN or
    /// loopback often speak plain http), no redirects (S3 explains a wrong region in a 301's body),
    /// a connect timeout, and a stall limit instead of a total timeout so that multi-GiB parts can finish.
    public static var defaultOptions: CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http", "https"]
        options.connectTimeout = .seconds(10)
        options.lowSpeedLimitBytesPerSecond = 1
        options.lowSpeedTime = .seconds(60)
        options.maxRedirects = 0
        return options
    }

    public init(endpoint: S3Endpoint, credentials: S3Credentials, options: CurlOptions = S3Client.defaultOptions) {
        self.endpoint = endpoint
        self.signer = SigV4Signer(credentials: credentials, region: endpoint.region)
        // Whatever the caller's options: a key is sent exactly as it was signed, `/../` included.
        var options = options
        options.pathAsIs = true
        self.options = options
    }

    // MARK: Bucket

    /// Succeeds when the bucket exists and the credentials may use it (the readiness probe).
    public func headBucket() throws(S3Error) {
        let operation = "HEAD bucket \(endpoint.bucket)"
        let response = try send("HEAD", url: endpoint.bucketURL, operation: operation)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation, notFound: .noSuchBucket)
        }
    }

    // MARK: Objects

    /// Stores `body` under `key` and returns the ETag.
    /// - Parameters:
    ///   - payloadSHA256Hex: hex SHA-256 of the body, which the caller computed while spooling it;
    ///     nil computes it here (reading a `.file` body once more).
    ///   - contentMD5: the body's MD5 (16 bytes), sent as `Content-MD5`: S3 and SeaweedFS refuse a body
    ///     whose MD5 differs (`BadDigest`). Not every store checks `x-amz-content-sha256` (SeaweedFS
    ///     accepts any), every S3 store checks this.
    ///   - ifNoneMatch: send `If-None-Match: *`, so the PUT fails with `.preconditionFailed`
    ///     instead of replacing an object that already exists.
    ///   - shouldAbort: polled about once a second while the body goes up; true ends the upload with a
    ///     `.transport` error whose `isAborted` is true (a stopping daemon does not wait for it).
    @discardableResult
    public func putObject(
        key: String, body: RequestBody, contentType: String?, metadata: [String: String] = [:],
        payloadSHA256Hex: String? = nil, contentMD5: [UInt8]? = nil, ifNoneMatch: Bool = false,
        shouldAbort: (@Sendable () -> Bool)? = nil
    ) throws(S3Error) -> String {
        let operation = "PUT \(key)"
        try Self.validate(key: key)
        var headers = try Self.objectHeaders(contentType: contentType, metadata: metadata)
        if let contentMD5 {
            guard contentMD5.count == 16 else { throw S3Error(.invalidArgument, "Content-MD5 must be 16 bytes") }
            headers.append(("Content-MD5", Data(contentMD5).base64EncodedString()))
        }
        if ifNoneMatch { headers.append(("If-None-Match", "*")) }
        let hash = try payloadHash(payloadSHA256Hex, body: body)
        let response = try send(
            "PUT", url: endpoint.objectURL(key: key), headers: headers, body: body,
            payloadHash: hash, operation: operation, shouldAbort: shouldAbort)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        return response.headers.trimmed("etag") ?? ""
    }

    /// The whole object in memory, up to `options.maxBytes` (16 MiB when unset): for small objects.
    /// Large ones go through `getObject(key:into:)`.
    public func getObject(key: String) throws(S3Error) -> [UInt8] {
        let operation = "GET \(key)"
        try Self.validate(key: key)
        let response = try send("GET", url: endpoint.objectURL(key: key), operation: operation)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        return response.body
    }

    /// Streams the object into `sink` as it arrives (memory stays flat). A throwing sink stops the
    /// transfer with `.sinkFailed`.
    @discardableResult
    public func getObject(key: String, into sink: (UnsafeRawBufferPointer) throws -> Void) throws(S3Error) -> ObjectInfo {
        let operation = "GET \(key)"
        try Self.validate(key: key)
        let response = try send("GET", url: endpoint.objectURL(key: key), operation: operation, sink: sink)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        return ObjectInfo(headers: response.headers, fallbackSize: response.bytesReceived)
    }

    /// The object's size, ETag, content type and metadata; nil when there is no such key.
    public func headObject(key: String) throws(S3Error) -> ObjectInfo? {
        let operation = "HEAD \(key)"
        try Self.validate(key: key)
        let response = try send("HEAD", url: endpoint.objectURL(key: key), operation: operation)
        if response.status == 404 { return nil }
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        return ObjectInfo(headers: response.headers, fallbackSize: 0)
    }

    /// Removes the object. Deleting a key that does not exist succeeds, as S3 itself answers.
    public func deleteObject(key: String) throws(S3Error) {
        let operation = "DELETE \(key)"
        try Self.validate(key: key)
        let response = try send("DELETE", url: endpoint.objectURL(key: key), operation: operation)
        if response.isSuccess { return }
        let error = S3Error.from(status: response.status, body: response.body, operation: operation)
        if error.code == .noSuchKey { return }
        throw error
    }

    /// A URL anyone can GET the object with until `date + expires` (1...604800 s), signing nothing
    /// but the host. `responseContentDisposition` makes S3 answer with that Content-Disposition
    /// (e.g. `attachment; filename="x.png"`).
    public func presignedGetURL(
        key: String, expires: Int, responseContentDisposition: String? = nil,
        date: Date = Date()
    ) -> String {
        if responseContentDisposition == nil, signer.credentials.sessionToken == nil {
            return signer.presignSimple(
                method: "GET", origin: endpoint.objectOrigin, canonicalPath: endpoint.objectPath(key: key),
                host: endpoint.objectHost, expires: expires, date: date
            ).url
        }
        var extra: [(String, String)] = []
        if let responseContentDisposition { extra.append(("response-content-disposition", responseContentDisposition)) }
        return signer.presign(method: "GET", url: endpoint.objectURL(key: key), expires: expires, date: date, extraQuery: extra)
    }

    // MARK: Sending

    /// Signs and performs one request, collecting a small body (XML answers, small objects).
    func send(
        _ method: String, url: String, headers: [(String, String)] = [], body: RequestBody = .none,
        payloadHash: String = SigV4Signer.emptyPayloadHash, operation: String,
        maxBytes: Int64? = nil, totalTimeout: Duration? = nil,
        shouldAbort: (@Sendable () -> Bool)? = nil
    ) throws(S3Error) -> CurlResponse {
        let request = signed(method, url: url, headers: headers, body: body, payloadHash: payloadHash)
        var options = self.options
        if let maxBytes { options.maxBytes = maxBytes }
        if let totalTimeout { options.totalTimeout = totalTimeout }
        if let shouldAbort { options.shouldAbort = shouldAbort }
        return try withSession { (session) throws(S3Error) -> CurlResponse in
            do throws(CurlError) {
                return try session.perform(request, options: options)
            } catch {
                throw S3Error.transport(error, operation: operation)
            }
        }
    }

    /// Signs and performs one request, streaming a 2xx body into `sink`.
    func send(
        _ method: String, url: String, operation: String,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(S3Error) -> CurlResponse {
        let request = signed(method, url: url, headers: [], body: .none, payloadHash: SigV4Signer.emptyPayloadHash)
        return try withSession { (session) throws(S3Error) -> CurlResponse in
            do throws(CurlError) {
                return try session.perform(request, options: options, sink: sink)
            } catch {
                throw S3Error.transport(error, operation: operation)
            }
        }
    }

    private func signed(
        _ method: String, url: String, headers: [(String, String)], body: RequestBody,
        payloadHash: String
    ) -> CurlRequest {
        let auth = signer.sign(method: method, url: url, headers: headers, payloadHash: payloadHash, date: Date())
        return CurlRequest(method: method, url: url, headers: headers + auth, body: body)
    }

    private func withSession<T>(_ body: (CurlSession) throws(S3Error) -> T) throws(S3Error) -> T {
        let session = idleSessions.withLock { $0.popLast() } ?? CurlSession()
        defer {
            idleSessions.withLock { idle in
                if idle.count < Self.maxIdleSessions { idle.append(session) }
            }
        }
        return try body(session)
    }

    // MARK: Validation

    /// S3 keys are 1...1024 bytes of UTF-8.
    static func validate(key: String) throws(S3Error) {
        guard !key.isEmpty, key.utf8.count <= 1024 else {
            throw S3Error(.invalidArgument, "object key must be 1 to 1024 bytes, got \(key.utf8.count)")
        }
    }

    /// Content-Type and `x-amz-meta-*` headers, refusing what would break the request or inject
    /// headers (CR/LF, non-token names, non-ASCII values S3 would mangle) and S3's 2 KiB metadata limit.
    static func objectHeaders(contentType: String?, metadata: [String: String]) throws(S3Error) -> [(String, String)] {
        var headers: [(String, String)] = []
        if let contentType {
            try checkHeaderValue(contentType, what: "content type")
            headers.append(("Content-Type", contentType))
        }
        var metadataBytes = 0
        for (name, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw S3Error(.invalidArgument, "metadata name \"\(name.prefix(64))\" is not a valid header name")
            }
            try checkHeaderValue(value, what: "metadata \(name)")
            metadataBytes += name.utf8.count + value.utf8.count
            headers.append(("x-amz-meta-\(name.lowercased())", value))
        }
        guard metadataBytes <= 2048 else {
            throw S3Error(.invalidArgument, "user metadata is \(metadataBytes) bytes; S3 allows 2048")
        }
        return headers
    }

    private static func checkHeaderValue(_ value: String, what: String) throws(S3Error) {
        guard value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw S3Error(.invalidArgument, "\(what) must be printable ASCII (no CR, LF or non-ASCII bytes)")
        }
    }

    private static func isTokenByte(_ b: UInt8) -> Bool {
        S3URIEncoding.isUnreserved(b) || "!#$%&'*+^`|".utf8.contains(b)
    }

    /// The payload hash to sign: the caller's (checked to be 64 hex digits), or computed.
    func payloadHash(_ given: String?, body: RequestBody) throws(S3Error) -> String {
        if let given {
            let lower = given.lowercased()
            guard lower.utf8.count == 64, lower.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
                throw S3Error(.invalidArgument, "payload SHA-256 must be 64 hex digits")
            }
            return lower
        }
        switch body {
        case .none: return SigV4Signer.emptyPayloadHash
        case .bytes(let bytes): return Hex.encode(SHA256.hash(data: bytes))
        case .file(let path, let offset, let length): return try Self.sha256(file: path, offset: offset, length: length)
        }
    }

    /// Hashes a file range in 1 MiB reads.
    static func sha256(file path: String, offset: Int64, length: Int64) throws(S3Error) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw S3Error(.invalidArgument, "cannot open the body file for hashing")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        do {
            try handle.seek(toOffset: UInt64(offset))
            var remaining = length
            while remaining > 0 {
                guard let chunk = try handle.read(upToCount: Int(min(remaining, 1 << 20))), !chunk.isEmpty else {
                    throw S3Error(.invalidArgument, "body file is shorter than offset + length")
                }
                hasher.update(data: chunk)
                remaining -= Int64(chunk.count)
            }
        } catch let error as S3Error {
            throw error
        } catch {
            throw S3Error(.invalidArgument, "cannot read the body file for hashing", underlying: error)
        }
        return Hex.encode(hasher.finalize())
    }
}

extension S3Error {
    /// The request was ended by the caller's `shouldAbort`, not by the store or the network.
    public var isAborted: Bool { code == .transport && (underlying as? CurlError)?.code == .aborted }
}
