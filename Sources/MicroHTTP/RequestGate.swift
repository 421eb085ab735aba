/// What a route's gate is shown once a request's head is in: the request line and the header fields,
/// before libmicrohttpd has accepted a single byte of the body.
public struct RequestHead: Sendable {
    /// The method as the client sent it: "GET", "POST", ...
    public let method: String
    /// The path as the client sent it, still percent-encoded and without the query.
    public let path: String
    /// Header fields with lowercased names; repeated fields are joined with ", ".
    public let headers: [String: String]
    /// The declared body length; nil for a chunked body (or none). Untrusted: a claim, not a size.
    public let contentLength: Int?

    public init(method: String, path: String, headers: [String: String], contentLength: Int?) {
        self.method = method
        self.path = path
        var lowered: [String: String] = [:]
        for (name, value) in headers { lowered[name.lowercased()] = value }
        self.headers = lowered
        self.contentLength = contentLength
    }

    /// Header lookup that ignores case, since HTTP field names are case-insensitive.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A gate's decision.
public enum Admission {
    /// Read the body. A `BodyCheck`, when given, sees every byte of it as it arrives and has the last word
    /// before the handler runs.
    case admit(BodyCheck?)
    /// Answer this now. The body is never read into memory: libmicrohttpd skips it and closes the connection.
    case refuse(Response)
}

/// Decides, from the head alone, whether a request's body is worth reading. It runs on an event thread
/// for every request to its route, so like an `ImmediateHandler` it must never block. A gate that throws
/// refuses the request with the error's answer (see `ResponseError`).
///
/// Why a gate: a route that authenticates its requests (a signed webhook) can refuse an unauthenticated
/// one before its body costs any memory. Without it, every body up to the route's limit is buffered
/// before the handler can look at a single header.
public typealias RequestGate = @Sendable (RequestHead) throws -> Admission

/// Sees a request body piece by piece as it arrives, on the event thread serving the connection (so it
/// needs no locking, and must stay cheap per byte: a running hash, not a parse).
///
/// Why: a check over the whole body (a signature) can then refuse a forged body without the body ever
/// being handed over, and without one long computation at the end that would hold up every other
/// connection the event thread serves.
public protocol BodyCheck: AnyObject {
    /// The next bytes of the body, in order.
    func update(_ bytes: UnsafeRawBufferPointer)
    /// The body is complete: nil lets the request through to the handler, a response refuses it
    /// (the handler is not called).
    func finish() -> Response?
    /// What the check learned, handed to the handler as `Request.bodyCheckResult` when `finish()` let the
    /// request through (a body digest, or why a signature could not be decided without fetching keys), so
    /// the handler neither hashes the body again nor mistakes an undecided request for a verified one.
    var result: (any Sendable)? { get }
}

extension BodyCheck {
    public var result: (any Sendable)? { nil }
}
