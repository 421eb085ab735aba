extension Router {
    /// Answers `request` in-process, without a server or a socket: for route tests (as Hummingbird's
    /// `.router` test mode does), which then need no daemon, no port and no HTTP client.
    ///
    /// The request takes the path it would take through `HTTPServer` (the same code, see RouteDispatch.swift):
    /// resolution (404, 405, a malformed path's 400), the route's gate on the head, its body limit (413),
    /// its body check over the body in pieces, its immediate handler, then its handler of its kind: a
    /// blocking handler runs on the calling thread; a deferred one gets a `Responder` (a `.later` closure on
    /// the calling thread as on an event thread, a `.laterOnPool` one on the calling thread as on a pool
    /// thread) and this waits for the answer. Thrown errors are rendered as the server renders them.
    /// Not exercised: the socket, the server's body budget and spilling, timeouts, `Connection: close`.
    ///
    /// - Parameters:
    ///   - request: `path` still percent-encoded as a client sends it, `query` already decoded (see
    ///     `Request(method:target:)`); its `pathParameters` are filled in from the route.
    ///   - defaultMaxBodyBytes: the limit for routes without their own (the server's `defaultMaxBodyBytes`).
    ///   - timeout: how long to wait for a deferred answer.
    /// - Throws: `HTTPServerError(.noAnswer)` when a deferred route did not answer within `timeout`.
    public func respond(
        to request: Request, defaultMaxBodyBytes: Int = HTTPServer.Configuration().defaultMaxBodyBytes,
        timeout: Duration = .seconds(30)
    ) throws(HTTPServerError) -> Response {
        let route: Route
        let parameters: [String: String]
        switch plan(method: request.method, rawPath: request.path) {
        case .answer(let response): return response
        case .handle(let matched, let matchedParameters): (route, parameters) = (matched, matchedParameters)
        }
        let declared = request.header("content-length").map { Int($0) ?? Int.max } ?? (request.body.isEmpty ? nil : request.body.count)
        var bodyCheck: BodyCheck?
        if route.gate != nil {
            switch admit(
                route,
                RequestHead(
                    method: request.method, path: request.path, headers: request.headers,
                    contentLength: declared))
            {
            case .refuse(let response): return response
            case .admit(let check): bodyCheck = check
            }
        }
        let limit = route.maxBodyBytes ?? defaultMaxBodyBytes
        if max(declared ?? 0, request.body.count) > limit { return Refusal.payloadTooLarge(limit) }
        if let bodyCheck {
            // In pieces, as a body arrives from a socket.
            request.body.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let end = min(bytes.count, offset + 16 * 1024)
                    bodyCheck.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
                    offset = end
                }
            }
            if let refusal = bodyCheck.finish() { return refusal }
        }
        var routed = request
        routed.pathParameters = parameters
        routed.bodyCheckResult = bodyCheck?.result
        let awaited = AwaitedAnswer()
        switch dispatch(route, routed) {
        case .answer(let response): return response
        case .block(let run): return run()
        case .later(let start), .laterOnPool(let start): start(Responder(awaited))
        }
        guard let response = awaited.wait(timeout: timeout) else {
            throw HTTPServerError(.noAnswer, "\(request.method) \(request.path) was not answered within \(timeout)")
        }
        return response
    }
}

extension Request {
    /// A request as a client would send `target` (`/v1/assets?state=failed&limit=10`): the path stays
    /// percent-encoded, the query is decoded as the server decodes it (`+` is a space). For tests that
    /// call `Router.respond(to:)`.
    public init(method: String, target: String, headers: [String: String] = [:], body: [UInt8] = []) {
        let path: Substring
        var query: [String: String] = [:]
        if let mark = target.firstIndex(of: "?") {
            path = target[..<mark]
            for pair in target[target.index(after: mark)...].split(separator: "&", omittingEmptySubsequences: true) {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = percentDecode(parts[0], plusIsSpace: true) else { continue }
                query[name] = parts.count > 1 ? percentDecode(parts[1], plusIsSpace: true) ?? String(parts[1]) : ""
            }
        } else {
            path = target[...]
        }
        self.init(method: method, path: String(path), query: query, headers: headers, body: body)
    }
}
