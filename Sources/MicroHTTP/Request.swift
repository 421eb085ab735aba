/// One HTTP request, complete with its body, as a handler sees it. The body is collected in full
/// before the handler runs (bounded by the route's limit) so that handlers can verify signatures
/// over the exact bytes and stay synchronous.
public struct Request: Sendable {
    /// The method as the client sent it: "GET", "POST", ...
    public let method: String
    /// The path as the client sent it, still percent-encoded and without the query. Route
    /// parameters are the decoded form; this one is kept raw so that logs show what arrived.
    public let path: String
    /// Query arguments, percent-decoded ("+" is a space); a repeated name keeps its last value;
    /// a name without "=" has the empty string as value.
    public let query: [String: String]
    /// Header fields with lowercased names; repeated fields are joined with ", " (RFC 9110 5.3).
    public let headers: [String: String]
    /// The body, unless it is in `bodyFile`.
    public let body: [UInt8]
    /// The body as a file, when it was large enough to be spilled to disk while it arrived and the route
    /// takes bodies as files (`Router.add(…, bodyAsFile: true)`); `body` is then empty. Nil otherwise.
    public let bodyFile: BodyFile?
    /// Values of the `{name}` segments of the matched route pattern, percent-decoded once.
    public var pathParameters: [String: String]
    /// The client's numeric IP address, when the socket has one.
    public let remoteAddress: String?
    /// What the route's `BodyCheck` learned while the body arrived (`BodyCheck.result`); nil without one.
    public var bodyCheckResult: (any Sendable)?

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = [], bodyFile: BodyFile? = nil, pathParameters: [String: String] = [:], remoteAddress: String? = nil,
        bodyCheckResult: (any Sendable)? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        var lowered: [String: String] = [:]
        for (name, value) in headers { lowered[name.lowercased()] = value }
        self.headers = lowered
        self.body = body
        self.bodyFile = bodyFile
        self.pathParameters = pathParameters
        self.remoteAddress = remoteAddress
        self.bodyCheckResult = bodyCheckResult
    }

    /// The body's length, wherever it is.
    public var bodyCount: Int { bodyFile?.size ?? body.count }

    /// Header lookup that ignores case, since HTTP field names are case-insensitive.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}
