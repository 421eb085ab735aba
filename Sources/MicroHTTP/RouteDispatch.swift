import Primitives

/// The steps every request goes through, whoever carries it: libmicrohttpd's callbacks (Callbacks.swift)
/// or `Router.respond(to:)` in a test. One copy of them, so a route tested in-process takes the path a
/// request over a socket takes (resolution, gate, body limit, body check, immediate handler, the handler
/// of its kind, errors rendered), all but the socket, the body budget and spilling to disk.
extension Router {
    /// What to do with a request once its head is in.
    enum Plan {
        /// Run this route once the body is in.
        case handle(Route, parameters: [String: String])
        /// Answer this (404, 405, 400) once the request is complete.
        case answer(Response)
    }

    func plan(method: String, rawPath: String) -> Plan {
        switch resolve(method: method, rawPath: rawPath) {
        case .matched(let route, let parameters):
            return .handle(route, parameters: parameters)
        case .notFound:
            return .answer(.error(status: 404, code: "not_found", message: "no such resource"))
        case .methodNotAllowed(let allow):
            return .answer(
                .error(
                    status: 405, code: "method_not_allowed", message: "method \(method) is not allowed here",
                    headers: [("Allow", allow)]))
        case .malformedPath:
            return .answer(.error(status: 400, code: "bad_request", message: "the path is not valid percent-encoded UTF-8"))
        }
    }

    /// The route's gate on a head: admitted (with the check its body must pass) or refused. A gate that
    /// throws refuses with the error's answer.
    func admit(_ route: Route, _ head: RequestHead) -> Admission {
        guard let gate = route.gate else { return .admit(nil) }
        do {
            return try gate(head)
        } catch {
            return .refuse(render(error, head))
        }
    }

    /// What a route does with a complete request, decided on the thread that holds the body (an event
    /// thread, or a pool thread after a spilled body was read back).
    enum Dispatch {
        /// Send this.
        case answer(Response)
        /// Run this where it may block (a pool thread); it renders its own errors.
        case block(@Sendable () -> Response)
        /// Give a responder to this where it must not block; it renders its own errors.
        case later(@Sendable (Responder) -> Void)
        /// Give a responder to this where it may block; it renders its own errors.
        case laterOnPool(@Sendable (Responder) -> Void)
    }

    /// The immediate handler first, then the route's handler of its kind; anything thrown becomes the answer.
    func dispatch(_ route: Route, _ request: Request) -> Dispatch {
        do {
            if let immediate = route.immediate, let response = try immediate(request) { return .answer(response) }
            switch route.work {
            case .blocking(let handler):
                return .block { self.answering(request) { try handler(request) } }
            case .deferred(let handler):
                switch try handler(request) {
                case .now(let response): return .answer(response)
                case .later(let start): return .later { responder in self.run(start, responder, for: request) }
                case .laterOnPool(let start): return .laterOnPool { responder in self.run(start, responder, for: request) }
                }
            }
        } catch {
            return .answer(render(error, request.head))
        }
    }

    /// The answer for an error thrown while serving `head`: its own if it is a `ResponseError`, else the
    /// router's `unhandledError`.
    func render(_ error: any Error, _ head: RequestHead) -> Response {
        if let error = error as? any ResponseError { return error.response }
        return unhandledError(error, head)
    }

    private func answering(_ request: Request, _ body: () throws -> Response) -> Response {
        do {
            return try body()
        } catch {
            return render(error, request.head)
        }
    }

    /// Runs a deferred closure; if it throws, the error answers (unless the closure answered first).
    private func run(_ start: (Responder) throws -> Void, _ responder: Responder, for request: Request) {
        do {
            try start(responder)
        } catch {
            responder.respond(render(error, request.head))
        }
    }
}

/// The server's own refusals, the same over a socket and in-process.
enum Refusal {
    static func payloadTooLarge(_ limit: Int) -> Response {
        .error(status: 413, code: "payload_too_large", message: "the request body is larger than \(limit) bytes")
    }

    /// The body budget is spent: a sender that retries (every webhook provider does) gets through shortly.
    static func overBudget() -> Response {
        .error(
            status: 503, code: "server_busy", message: "too many request bodies are being received; retry later",
            headers: [("Retry-After", "5")])
    }

    /// The body could not be kept (disk full): nothing was handed to the route, so nothing was recorded.
    static func bodyStorageFailed(_ error: SystemCallError) -> Response {
        .error(
            status: 503, code: "body_storage_unavailable", message: "the request body could not be stored; retry later",
            headers: [("Retry-After", "30")])
    }
}

extension Request {
    /// The head of this request, as a gate and an error renderer see it.
    var head: RequestHead {
        RequestHead(method: method, path: path, headers: headers, contentLength: body.count)
    }
}
