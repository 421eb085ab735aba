import Crypto
import Foundation
import Primitives
import ReadMostly
import Synchronization

/// AWS Signature Version 4, written for S3's rules.
///
/// Why our own rather than libcurl's: libcurl 7.88's `CURLOPT_AWS_SIGV4` mis-signs queries that are
/// unsorted or have valueless parameters (`?uploads`, multipart) and cannot presign. S3 differs from the
/// generic SigV4 rules in two ways honoured here: the path is not normalised (no dot-segment
/// removal, `//` kept) and each segment is encoded exactly once.
///
/// URLs given to the signer may carry the key raw (`/a b/ሴ`) or already encoded once
/// (`/a%20b/%E1%88%B4`): both are brought to the same canonical form (decode, then encode once).
/// A raw key that itself contains `%XX` must therefore be encoded by the caller (`S3Endpoint`
/// always does).
public struct SigV4Signer: Sendable {
    public let credentials: S3Credentials
    public let region: String
    public let service: String
    /// Derived signing keys, shared by copies of this signer (it is a reference) and by threads.
    private let keys = SigningKeyCache()

    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    static let algorithm = "AWS4-HMAC-SHA256"

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    // MARK: Header signing

    /// Returns the headers to add to the request: `Authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` (= `payloadHash`) and `x-amz-security-token` when a session token is
    /// set. Every header in `headers` is signed, plus `host` (from the URL, with `:port` when not the
    /// scheme's default), so pass only headers that will be sent unchanged.
    public func sign(method: String, url: String, headers: [(String, String)], payloadHash: String, date: Date)
        -> [(String, String)]
    {
        let amzDate = AMZDate(date)
        var added: [(String, String)] = [
            ("x-amz-date", amzDate.timestamp),
            ("x-amz-content-sha256", payloadHash),
        ]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        var all = headers.filter { !Self.isManaged($0.0) }
        if !all.contains(where: { $0.0.lowercased() == "host" }), let parts = URLParts(url) {
            all.append(("host", parts.hostHeader))
        }
        all += added
        let creq = canonicalRequest(method: method, url: url, headers: all, payloadHash: payloadHash)
        let auth = authorization(canonicalRequest: creq, signedHeaders: signedHeaders(all), date: date)
        return [("Authorization", auth)] + added
    }

    /// Headers `sign` sets itself; a caller's copy would be signed twice and conflict.
    private static func isManaged(_ name: String) -> Bool {
        switch name.lowercased() {
        case "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token": return true
        default: return false
        }
    }

    // MARK: Query presigning

    /// The parts of a presigned URL, exposed so tests can compare each step with published vectors.
    public struct Presigned: Sendable {
        public let url: String
        public let canonicalRequest: String
        public let stringToSign: String
        public let signature: String
    }

    /// A URL that grants `method` on `url` to whoever holds it, until `date + expires`.
    /// `expires` is clamped to S3's range 1...604800 seconds (7 days). The payload is
    /// `UNSIGNED-PAYLOAD` and only `host` is signed, so any client can use the URL as is.
    /// `extraQuery` holds raw (unencoded) pairs, e.g. `response-content-disposition`.
    public func presign(method: String, url: String, expires: Int, date: Date, extraQuery: [(String, String)] = [])
        -> String
    {
        presignDetails(method: method, url: url, expires: expires, date: date, extraQuery: extraQuery).url
    }

    public func presignDetails(
        method: String, url: String, expires: Int, date: Date, extraQuery: [(String, String)] = []
    ) -> Presigned {
        let parts = URLParts(url)
        if parts?.query == nil, credentials.sessionToken == nil, extraQuery.isEmpty {
            return presignSimple(
                method: method, origin: parts?.origin ?? "", canonicalPath: Self.canonicalPath(parts?.path ?? ""),
                host: parts?.hostHeader ?? "", expires: expires, date: date)
        }
        let amzDate = AMZDate(date)
        var query: [(String, String)] = [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(amzDate))"),
            ("X-Amz-Date", amzDate.timestamp),
            ("X-Amz-Expires", String(min(max(expires, 1), 604_800))),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if let token = credentials.sessionToken { query.append(("X-Amz-Security-Token", token)) }
        query += extraQuery
        // Existing query items of the URL come first (decoded), then ours.
        let existing = parts?.query.map(Self.splitQuery) ?? []
        let canonicalQuery = Self.canonicalQuery(existing + query.map { (Self.encodeComponent($0.0), Self.encodeComponent($0.1)) })
        let path = Self.canonicalPath(parts?.path ?? "")
        let host = parts?.hostHeader ?? ""
        let creq = [method, path, canonicalQuery, "host:\(host)\n", "host", Self.unsignedPayload]
            .joined(separator: "\n")
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate)
        let sig = signature(stringToSign: sts, amzDate: amzDate)
        let origin = parts?.origin ?? ""
        return Presigned(
            url: "\(origin)\(path)?\(canonicalQuery)&X-Amz-Signature=\(sig)",
            canonicalRequest: creq, stringToSign: sts, signature: sig)
    }

    /// The usual presign: no query in the URL, no session token, no extra parameters, from parts already in
    /// canonical form (`canonicalPath` encoded once, `host` the Host header). Our five parameter names are
    /// then in canonical order and only the credential has characters to encode, so the query is written
    /// directly. `S3Client` calls this with parts it computed once per endpoint: a lookup answer then
    /// neither builds nor re-parses a URL.
    func presignSimple(method: String, origin: String, canonicalPath: String, host: String, expires: Int, date: Date) -> Presigned {
        let amzDate = AMZDate(date)
        let credential = Self.encodeComponent("\(credentials.accessKeyID)/\(scope(amzDate))")
        let canonicalQuery =
            "X-Amz-Algorithm=\(Self.algorithm)&X-Amz-Credential=\(credential)&X-Amz-Date=\(amzDate.timestamp)"
            + "&X-Amz-Expires=\(min(max(expires, 1), 604_800))&X-Amz-SignedHeaders=host"
        let creq = "\(method)\n\(canonicalPath)\n\(canonicalQuery)\nhost:\(host)\n\nhost\n\(Self.unsignedPayload)"
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate)
        let sig = signature(stringToSign: sts, amzDate: amzDate)
        return Presigned(
            url: "\(origin)\(canonicalPath)?\(canonicalQuery)&X-Amz-Signature=\(sig)",
            canonicalRequest: creq, stringToSign: sts, signature: sig)
    }

    // MARK: The steps, exposed for tests

    /// Canonical request over exactly `headers` (none added): method, canonical URI, canonical
    /// query, canonical headers, signed header names, payload hash.
    public func canonicalRequest(method: String, url: String, headers: [(String, String)], payloadHash: String)
        -> String
    {
        let parts = URLParts(url)
        let path = Self.canonicalPath(parts?.path ?? "")
        let query = Self.canonicalQuery(parts?.query.map(Self.splitQuery) ?? [])
        let canonicalHeaders = Self.canonicalHeaders(headers)
        let headerBlock = canonicalHeaders.map { "\($0.name):\($0.value)\n" }.joined()
        let signed = canonicalHeaders.map(\.name).joined(separator: ";")
        return [method, path, query, headerBlock, signed, payloadHash].joined(separator: "\n")
    }

    /// `host;x-amz-date;…`: the lowercased, sorted, de-duplicated header names.
    public func signedHeaders(_ headers: [(String, String)]) -> String {
        Self.canonicalHeaders(headers).map(\.name).joined(separator: ";")
    }

    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        stringToSign(canonicalRequest: canonicalRequest, amzDate: AMZDate(date))
    }

    public func signature(stringToSign: String, date: Date) -> String {
        signature(stringToSign: stringToSign, amzDate: AMZDate(date))
    }

    /// The `Authorization` header value for a canonical request.
    public func authorization(canonicalRequest: String, signedHeaders: String, date: Date) -> String {
        let amzDate = AMZDate(date)
        let sig = signature(stringToSign: stringToSign(canonicalRequest: canonicalRequest, amzDate: amzDate), amzDate: amzDate)
        return "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(amzDate)), "
            + "SignedHeaders=\(signedHeaders), Signature=\(sig)"
    }

    private func stringToSign(canonicalRequest: String, amzDate: AMZDate) -> String {
        var text = canonicalRequest
        let hash = Hex.encode(text.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) })
        return "\(Self.algorithm)\n\(amzDate.timestamp)\n\(scope(amzDate))\n\(hash)"
    }

    private func signature(stringToSign: String, amzDate: AMZDate) -> String {
        var mac = keyedMAC(day: amzDate.day)
        var text = stringToSign
        text.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        return Hex.encode(mac.finalize())
    }

    /// `20150830T123600Z` for a date: the form of `x-amz-date` and of the test vectors.
    public static func amzDate(_ date: Date) -> String { AMZDate(date).timestamp }
    public static func parseAMZDate(_ text: String) -> Date? { AMZDate.parse(text) }

    // MARK: Internals

    private func scope(_ date: AMZDate) -> String { "\(date.day)/\(region)/\(service)/aws4_request" }

    /// An HMAC already keyed with the signing key for `day`: the key is derived once per (day, region,
    /// service) rather than once per signature (four HMACs and their allocations were a sixth of a presigned
    /// lookup's CPU time, bench/lookup), and the keyed state is copied instead of re-keyed.
    private func keyedMAC(day: Substring) -> HMAC<SHA256> {
        keys.mac(day: day, region: region, service: service) { HMAC<SHA256>(key: deriveSigningKey(day: day)) }
    }

    /// SigV4's key derivation: HMAC chain over the date, region, service and `aws4_request`.
    private func deriveSigningKey(day: Substring) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: some StringProtocol) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key)))
        }
        let secret = SymmetricKey(data: Array("AWS4\(credentials.secretAccessKey)".utf8))
        return hmac(hmac(hmac(hmac(secret, day), region), service), "aws4_request")
    }

    /// S3 rule: no normalisation; each segment brought to its single encoding; `/` kept.
    static func canonicalPath(_ path: Substring) -> String {
        if path.isEmpty { return "/" }
        // Nothing escaped and nothing to escape (the usual object key): the path is its own canonical form.
        if path.utf8.allSatisfy({ S3URIEncoding.isUnreserved($0) || $0 == UInt8(ascii: "/") }) { return String(path) }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { S3URIEncoding.canonical($0, encodeSlash: true) }
            .joined(separator: "/")
    }

    static func encodeComponent(_ s: String) -> String { S3URIEncoding.encode(s, encodeSlash: true) }

    /// Splits a query as written into canonically encoded (name, value) pairs; a parameter without
    /// `=` (`?uploads`) gets the empty value.
    static func splitQuery(_ query: Substring) -> [(String, String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { item in
            if let eq = item.firstIndex(of: "=") {
                return (
                    S3URIEncoding.canonical(item[item.startIndex..<eq], encodeSlash: true),
                    S3URIEncoding.canonical(item[item.index(after: eq)...], encodeSlash: true)
                )
            }
            return (S3URIEncoding.canonical(item, encodeSlash: true), "")
        }
    }

    /// Sorted by encoded name, then value, byte-wise; every pair written `name=value`.
    static func canonicalQuery(_ pairs: [(String, String)]) -> String {
        pairs.sorted { a, b in
            if a.0 != b.0 { return a.0.utf8.lexicographicallyPrecedes(b.0.utf8) }
            return a.1.utf8.lexicographicallyPrecedes(b.1.utf8)
        }
        .map { "\($0.0)=\($0.1)" }
        .joined(separator: "&")
    }

    /// Lowercased names, sorted; values trimmed with inner whitespace runs collapsed to one space;
    /// same-name headers joined with commas in the order given.
    static func canonicalHeaders(_ headers: [(String, String)]) -> [(name: String, value: String)] {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            if values[lower] == nil { order.append(lower) }
            values[lower, default: []].append(collapseWhitespace(value))
        }
        return order.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            .map { (name: $0, value: values[$0]!.joined(separator: ",")) }
    }

    static func collapseWhitespace(_ value: String) -> String {
        var out = ""
        var pendingSpace = false
        for ch in value {
            if ch == " " || ch == "\t" || ch == "\n" || ch == "\r" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(ch)
            }
        }
        return out
    }
}

/// The signing keys a signer has derived, by (day, region, service), as keyed HMAC states ready to copy. SigV4 keys change daily, so a few
/// entries cover every date in use at once (now, and the odd caller signing for a fixed date, as tests do);
/// the cache is emptied when it would grow past `capacity`, which bounds it whatever dates callers pass.
final class SigningKeyCache: Sendable {
    private struct Scope: Hashable {
        let day: String
        let region: String
        let service: String
    }

    /// The key used last: nearly every call signs for today, and many threads presign at once, so readers
    /// share a reader-writer lock and take one reference (see `ReadMostly`).
    private final class Latest: @unchecked Sendable {
        // Safe: immutable after init; HMAC<SHA256> is a value (two digest states) that is only copied out.
        let day: String, region: String, service: String
        let mac: HMAC<SHA256>
        init(day: String, region: String, service: String, mac: HMAC<SHA256>) {
            self.day = day
            self.region = region
            self.service = service
            self.mac = mac
        }
    }

    static let capacity = 8
    private let entries = Mutex<[Scope: HMAC<SHA256>]>([:])
    private let latest = ReadMostly<Latest?>(nil)

    func mac(day: Substring, region: String, service: String, derive: () -> HMAC<SHA256>) -> HMAC<SHA256> {
        if let last = latest.read(), last.day == day, last.region == region, last.service == service {
            return last.mac
        }
        let scope = Scope(day: String(day), region: region, service: service)
        let key: HMAC<SHA256>
        if let known = entries.withLock({ $0[scope] }) {
            key = known
        } else {
            // Derived outside the lock: two threads may both derive a new day's key once; both get the same bytes.
            key = derive()
            entries.withLock { entries in
                if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
                entries[scope] = key
            }
        }
        let newest = Latest(day: scope.day, region: region, service: service, mac: key)
        latest.replace(with: newest)
        return key
    }
}
