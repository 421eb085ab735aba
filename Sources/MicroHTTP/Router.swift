/// A synchronous request handler. Handlers may block (database calls): they run on a pool thread of
/// their own while their connection waits, suspended. What they throw is rendered by the router
/// (`ResponseError`, else the router's `unhandledError`), on that thread, so no error can escape into
/// libmicrohttpd's C frames.
public typealias Handler = @Sendable (Request) throws -> Response

/// An answer that needs no waiting (memory only, no database, no network), or nil to hand the request
/// to the route's blocking `Handler`. It runs on one of the few event threads that serve every
/// connection, so it must never block: a cache hit, a fixed reply, a refusal (returned or thrown).
public typealias ImmediateHandler = @Sendable (Request) throws -> Response?

/// What a `DeferredHandler` decides on the event thread.
public enum DeferredAnswer: Sendable {
    /// Answer at once (a refusal, a fixed reply); nothing is suspended.
    case now(Response)
    /// Suspend the connection and pass its `Responder` to this closure, which must hand it to whatever
    /// will answer (from any thread, exactly once). The closure runs on the event thread: it must not block.
    /// Should it throw before answering, the error is the answer.
    case later(@Sendable (Responder) throws -> Void)
    /// Suspend the connection and run this closure on a handler pool thread with its `Responder`: for a
    /// request that needs blocking work first (decoding into files and fsyncing them) before it joins
    /// something that answers later. The closure may block; it answers, or hands the responder on, exactly
    /// once, or throws, and the error is the answer.
    case laterOnPool(@Sendable (Responder) throws -> Void)
}

/// A handler for work that waits on something else (a group commit) without holding a thread while it
/// waits: it runs on the event thread, so like an `ImmediateHandler` it must never block, and it either
/// answers at once (or throws) or arranges for a `Responder` to be answered later. (A body too large to
/// keep in memory is read back from disk on a handler pool thread, and the handler then runs there.)
public typealias DeferredHandler = @Sendable (Request) throws -> DeferredAnswer

/// Renders an error that is not a `ResponseError` (a dependency that went away, a bug): the last word on
/// what a handler, gate or deferred closure threw. Runs on the thread that caught it, so it must not block.
public typealias UnhandledErrorRenderer = @Sendable (any Error, RequestHead) -> Response

/// Maps method + path pattern to handlers. Patterns are literal segments and `{name}` segments,
/// e.g. "/v1/predictions/{provider}/{id}/outputs/{n}"; a parameter matches one whole segment.
public struct Router: Sendable {
    struct Route: Sendable {
        let method: String
        let pattern: PathPattern
        /// nil: the server's `defaultMaxBodyBytes`.
        let maxBodyBytes: Int?
        let immediate: ImmediateHandler?
        /// Looks at the head before any body byte is read (see `RequestGate`).
        let gate: RequestGate?
        /// A spilled body reaches the handler as `Request.bodyFile` instead of being read back into memory.
        let bodyAsFile: Bool
        let work: Work
    }

    enum Work: Sendable {
        case blocking(Handler)
        case deferred(DeferredHandler)
    }

    private(set) var routes: [Route] = []
    /// See `UnhandledErrorRenderer`.
    let unhandledError: UnhandledErrorRenderer

    /// `unhandledError` answers errors that are not `ResponseError`s; the default is a 500 that says
    /// nothing of the error (the daemon passes one that logs it and answers a database outage 503).
    public init(unhandledError: @escaping UnhandledErrorRenderer = Router.internalError) {
        self.unhandledError = unhandledError
    }

    /// 500 `internal_error`, and nothing of what went wrong.
    public static let internalError: UnhandledErrorRenderer = { _, _ in
        .error(status: 500, code: "internal_error", message: "the request failed")
    }

    /// Registers a handler. `maxBodyBytes` overrides the server's default body limit for this
    /// route only (webhooks carrying inline images need more than the lookup API).
    /// A malformed pattern is a programming error and traps at registration, not per request.
    /// `immediate`, when given, is tried first on the event thread; only when it returns nil does the
    /// request go to `handler` on a pool thread. `gate`, when given, sees the head before the body is read
    /// and may refuse the request there (see `RequestGate`). `bodyAsFile`: a body large enough to have been
    /// spilled to disk while it arrived is handed over as `Request.bodyFile` (with `body` empty), for a
    /// handler that streams it rather than hold tens of MiB in memory; smaller bodies still come as `body`.
    public mutating func add(
        _ method: String, _ pattern: String, maxBodyBytes: Int? = nil, gate: RequestGate? = nil,
        bodyAsFile: Bool = false, immediate: ImmediateHandler? = nil, _ handler: @escaping Handler
    ) {
        precondition(maxBodyBytes.map { $0 >= 0 } ?? true, "maxBodyBytes must not be negative")
        routes.append(
            Route(
                method: method.uppercased(), pattern: PathPattern(pattern), maxBodyBytes: maxBodyBytes,
                immediate: immediate, gate: gate, bodyAsFile: bodyAsFile, work: .blocking(handler)))
    }

    /// Registers a handler that answers later through a `Responder` instead of blocking a pool thread
    /// (see `DeferredHandler`). `bodyAsFile` as for a blocking handler: a spilled body is handed over as its
    /// file (`Request.bodyFile`) on the event thread, so the handler must not read it there.
    public mutating func add(
        _ method: String, _ pattern: String, maxBodyBytes: Int? = nil, gate: RequestGate? = nil,
        bodyAsFile: Bool = false, deferred: @escaping DeferredHandler
    ) {
        precondition(maxBodyBytes.map { $0 >= 0 } ?? true, "maxBodyBytes must not be negative")
        routes.append(
            Route(
                method: method.uppercased(), pattern: PathPattern(pattern), maxBodyBytes: maxBodyBytes,
                immediate: nil, gate: gate, bodyAsFile: bodyAsFile, work: .deferred(deferred)))
    }

    enum Resolution {
        case matched(Route, parameters: [String: String])
        /// The path exists under other methods; `allow` is the value of the `Allow` header.
        case methodNotAllowed(allow: String)
        case notFound
        /// A segment had a bad percent escape or was not UTF-8.
        case malformedPath
    }

    /// Finds the route for a raw (still percent-encoded) path. HEAD falls back to GET routes;
    /// libmicrohttpd then sends the headers without the body.
    func resolve(method: String, rawPath: String) -> Resolution {
        var segments: [String] = []
        for raw in PathPattern.split(rawPath) {
            guard let decoded = percentDecode(raw) else { return .malformedPath }
            segments.append(decoded)
        }
        var allowed: Set<String> = []
        var headFallback: (Route, [String: String])?
        for route in routes {
            guard let parameters = route.pattern.match(segments) else { continue }
            if route.method == method { return .matched(route, parameters: parameters) }
            if method == "HEAD", route.method == "GET", headFallback == nil { headFallback = (route, parameters) }
            allowed.insert(route.method)
        }
        if let (route, parameters) = headFallback { return .matched(route, parameters: parameters) }
        if allowed.isEmpty { return .notFound }
        if allowed.contains("GET") { allowed.insert("HEAD") }
        return .methodNotAllowed(allow: allowed.sorted().joined(separator: ", "))
    }
}

/// A parsed route pattern.
struct PathPattern: Sendable, CustomStringConvertible {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    let segments: [Segment]
    let description: String

    init(_ pattern: String) {
        precondition(pattern.hasPrefix("/"), "route pattern \(pattern) must start with /")
        description = pattern
        segments = PathPattern.split(pattern).map { raw in
            if raw.hasPrefix("{"), raw.hasSuffix("}"), raw.count > 2 {
                return .parameter(String(raw.dropFirst().dropLast()))
            }
            precondition(!raw.contains("{") && !raw.contains("}"), "route pattern \(pattern): bad segment \(raw)")
            return .literal(String(raw))
        }
    }

    /// Segments after the leading "/"; empty segments are kept so "/a/" does not match "/a".
    /// Scans bytes rather than `Character`s (it runs for every request; "/" is ASCII, so byte positions
    /// are valid indices).
    static func split(_ path: String) -> [Substring] {
        var segments: [Substring] = []
        let bytes = path.utf8
        var start = bytes.startIndex
        var index = start
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "/") {
                segments.append(path[start..<index])
                start = bytes.index(after: index)
            }
            index = bytes.index(after: index)
        }
        segments.append(path[start..<bytes.endIndex])
        return Array(segments.dropFirst())
    }

    /// The parameters when `path` (decoded segments) matches, else nil.
    func match(_ path: [String]) -> [String: String]? {
        guard path.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (segment, value) in zip(segments, path) {
            switch segment {
            case .literal(let literal): if literal != value { return nil }
            case .parameter(let name):
                if value.isEmpty { return nil }
                parameters[name] = value
            }
        }
        return parameters
    }
}
