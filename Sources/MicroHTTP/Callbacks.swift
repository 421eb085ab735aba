import CMicroHTTPD

// libmicrohttpd's C callbacks. Plain nonisolated functions (DESIGN §4): libmicrohttpd calls them on
// its own threads, so they must not inherit any actor isolation. Context arrives through
// Unmanaged pointers: `cls` is the ServerCore (unretained, owned by HTTPServer), `*con_cls` the
// RequestContext of the request (retained here, released in `microHTTPRequestCompleted`).

/// MHD_AccessHandlerCallback. libmicrohttpd calls it once when the headers are in (`*con_cls` is
/// nil, `*upload_data_size` 0, and not one body byte accepted yet), once per piece of body
/// (`*upload_data_size` > 0), and once more when the request is complete (`*upload_data_size` == 0);
/// a response may only be queued on the first or last call.
nonisolated func microHTTPAccessHandler(
    _ cls: UnsafeMutableRawPointer?,
    _ connection: OpaquePointer?,
    _ url: UnsafePointer<CChar>?,
    _ method: UnsafePointer<CChar>?,
    _ version: UnsafePointer<CChar>?,
    _ uploadData: UnsafePointer<CChar>?,
    _ uploadDataSize: UnsafeMutablePointer<Int>?,
    _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> MHD_Result {
    guard let cls, let connection, let url, let method, let uploadDataSize, let conCls else { return .NO }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()
    let watch = core.eventThreads.enter()
    defer { watch.leave() }

    guard let slot = conCls.pointee else {
        return beginRequest(core, connection, method: String(cString: method), rawPath: String(cString: url), conCls: conCls)
    }
    let context = Unmanaged<RequestContext>.fromOpaque(slot).takeUnretainedValue()

    if uploadDataSize.pointee > 0 {
        let received = UnsafeRawBufferPointer(start: uploadData, count: uploadDataSize.pointee)
        uploadDataSize.pointee = 0
        switch context.append(received, budget: core.bodyBudget, discardAllowance: core.configuration.maxDiscardBytes) {
        case .kept, .discarded: return .YES
        case .giveUp: return .NO  // closes the connection without an answer
        }
    }
    if context.answeredEarly { return .YES }
    let draining = core.draining.load(ordering: .relaxed)
    if context.dispatched {
        // Called again after the pool thread resumed the connection: its answer is waiting.
        guard let response = context.pending.take() else { return .YES }
        return queue(response, on: connection, draining: draining)
    }
    core.deadlines.handling(connection)
    switch finish(core, context, connection) {
    case .answer(let response):
        return queue(response, on: connection, draining: draining)
    case .block(let handler, let request):
        context.dispatched = true
        MHD_suspend_connection(connection)
        let suspended = SuspendedRequest(core: core, connection: SuspendedConnection(pointer: connection), pending: context.pending)
        core.handlers.submit { suspended.answer(handler(request)) }
        return .YES
    case .later(let start):
        context.dispatched = true
        MHD_suspend_connection(connection)
        start(Responder(request: SuspendedRequest(core: core, connection: SuspendedConnection(pointer: connection), pending: context.pending)))
        return .YES
    case .laterOnPool(let start):
        context.dispatched = true
        MHD_suspend_connection(connection)
        let responder = Responder(request: SuspendedRequest(core: core, connection: SuspendedConnection(pointer: connection),
                                                            pending: context.pending))
        core.handlers.submit { start(responder) }
        return .YES
    case .readBack(let route, let parts, let body):
        // The body is on disk: reading tens of MiB back must not hold up the event thread, so the route
        // runs on the pool with a responder, whatever kind of handler it has.
        context.dispatched = true
        MHD_suspend_connection(connection)
        let responder = Responder(request: SuspendedRequest(core: core, connection: SuspendedConnection(pointer: connection),
                                                            pending: context.pending))
        core.handlers.submit { runReadBack(route, parts, body, responder) }
        return .YES
    }
}

/// A suspended connection, handed to the pool thread that will resume it. @unchecked Sendable:
/// MHD_resume_connection is the one call libmicrohttpd allows from any thread, and the connection
/// cannot go away while suspended (suspended connections do not time out, and the server stops the
/// daemon only once every suspended request has been answered, by its handler or by the stop itself).
struct SuspendedConnection: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// MHD_RequestCompletedCallback: the one place a RequestContext is released, whatever ended the
/// request (answered, client gone mid-upload, timeout, daemon shutdown). The slot is cleared so a
/// second call could not release it twice; the request's share of the body budget goes back.
nonisolated func microHTTPRequestCompleted(
    _ cls: UnsafeMutableRawPointer?,
    _ connection: OpaquePointer?,
    _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ reason: MHD_RequestTerminationCode
) {
    guard let cls else { return }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()
    if let connection { core.deadlines.requestCompleted(connection) }
    guard let conCls, let slot = conCls.pointee else { return }
    conCls.pointee = nil
    let context = Unmanaged<RequestContext>.fromOpaque(slot).takeRetainedValue()
    core.bodyBudget.release(context.reservedBytes)
    context.body.discard()
    core.inFlight.subtract(1, ordering: .releasing)
}

/// MHD_NotifyConnectionCallback: connections open and close here, so their deadlines can be kept
/// from the moment they are accepted (the access handler hears of a request only once its head is in).
nonisolated func microHTTPConnectionNotified(
    _ cls: UnsafeMutableRawPointer?,
    _ connection: OpaquePointer?,
    _ socketContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ code: MHD_ConnectionNotificationCode
) {
    guard let cls, let connection else { return }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()
    if code.rawValue == 0 {  // MHD_CONNECTION_NOTIFY_STARTED (the plain C enum imports without its names here)
        core.deadlines.opened(connection, fd: cmhd_connection_fd(connection))
    } else {
        core.deadlines.closed(connection)
    }
}

/// First call: route the request and decide, before reading any body, whether it can be answered
/// at once. Queuing a response now makes libmicrohttpd skip the body (and close the connection),
/// which is how a refused gate, an over-long Content-Length or a full body budget get their answer
/// without the body being read. In that order: an unauthenticated request is told 401 whatever it
/// declares, and only requests that may be served take from the budget.
private func beginRequest(
    _ core: ServerCore, _ connection: OpaquePointer, method: String, rawPath: String,
    conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>
) -> MHD_Result {
    core.deadlines.headReceived(connection)
    let contentLength = lookupHeader(connection, "Content-Length").map { Int($0) ?? Int.max }
    let chunked = lookupHeader(connection, "Transfer-Encoding")?.lowercased().contains("chunked") ?? false
    let hasBody = chunked || (contentLength ?? 0) > 0

    let plan: RequestContext.Plan
    var maxBodyBytes = 0
    switch core.router.resolve(method: method, rawPath: rawPath) {
    case .matched(let route, let parameters):
        plan = .handle(route, parameters: parameters)
        maxBodyBytes = route.maxBodyBytes ?? core.configuration.defaultMaxBodyBytes
    case .notFound:
        plan = .answer(.error(status: 404, code: "not_found", message: "no such resource"))
    case .methodNotAllowed(let allow):
        plan = .answer(.error(status: 405, code: "method_not_allowed", message: "method \(method) is not allowed here",
                              headers: [("Allow", allow)]))
    case .malformedPath:
        plan = .answer(.error(status: 400, code: "bad_request", message: "the path is not valid percent-encoded UTF-8"))
    }

    let body = BodyStore(spillDirectory: core.configuration.bodySpillDirectory,
                         spillThreshold: core.configuration.bodySpillThresholdBytes)
    let context = RequestContext(method: method, rawPath: rawPath, plan: plan, maxBodyBytes: maxBodyBytes,
                                 declaredLength: chunked ? nil : contentLength, body: body)
    conCls.pointee = Unmanaged.passRetained(context).toOpaque()
    core.inFlight.add(1, ordering: .relaxed)

    var early: Response?
    switch plan {
    case .handle(let route, _):
        if let gate = route.gate {
            let headers = collectHeaders(connection)
            context.headers = headers
            switch gate(RequestHead(method: method, path: rawPath, headers: headers, contentLength: chunked ? nil : contentLength)) {
            case .refuse(let response): early = response
            case .admit(let check): context.bodyCheck = check
            }
        }
        if early == nil, (contentLength ?? 0) > maxBodyBytes { early = payloadTooLarge(maxBodyBytes) }
        if early == nil, !chunked, let declared = contentLength, declared > 0 {
            if core.bodyBudget.reserve(declared) { context.reservedBytes = declared } else { early = overBudget() }
        }
    case .answer(let response):
        early = hasBody ? response : nil  // no point reading a body nobody will look at
    }
    guard let early else { return .YES }
    context.answeredEarly = true
    core.deadlines.handling(connection)
    return queue(early, on: connection, draining: core.draining.load(ordering: .relaxed))
}

private enum Outcome {
    /// Queue this now.
    case answer(Response)
    /// Run this on the handler pool, the connection suspended meanwhile.
    case block(Handler, Request)
    /// Suspend the connection and give its responder to this.
    case later(@Sendable (Responder) -> Void)
    /// Suspend the connection and give its responder to this on the handler pool.
    case laterOnPool(@Sendable (Responder) -> Void)
    /// Suspend the connection; on the handler pool, read the spilled body back and run the route.
    case readBack(Router.Route, RequestParts, SpilledBody)
}

/// Everything of a request but its body, read on the event thread (only it may read the connection's
/// headers and arguments).
struct RequestParts: Sendable {
    let method: String
    let path: String
    let query: [String: String]
    let headers: [String: String]
    let pathParameters: [String: String]
    let remoteAddress: String?
    let bodyCheckResult: (any Sendable)?

    func request(body: [UInt8]) -> Request {
        Request(method: method, path: path, query: query, headers: headers, body: body,
                pathParameters: pathParameters, remoteAddress: remoteAddress, bodyCheckResult: bodyCheckResult)
    }
}

/// Last call: the body is complete (or was refused and dropped).
private func finish(_ core: ServerCore, _ context: RequestContext, _ connection: OpaquePointer) -> Outcome {
    switch context.refusal {
    case .tooLarge: return .answer(payloadTooLarge(context.maxBodyBytes))
    case .overBudget: return .answer(overBudget())
    case .storageFailed(let error): return .answer(bodyStorageFailed(error))
    case nil: break
    }
    if let check = context.bodyCheck, let refusal = check.finish() {
        context.body.discard()
        return .answer(refusal)
    }
    switch context.plan {
    case .answer(let response):
        return .answer(response)
    case .handle(let route, let parameters):
        let parts = RequestParts(method: context.method, path: context.rawPath, query: collectQuery(connection),
                                 headers: context.headers ?? collectHeaders(connection), pathParameters: parameters,
                                 remoteAddress: clientAddress(connection), bodyCheckResult: context.bodyCheck?.result)
        let bytes: [UInt8]
        do {
            switch try context.body.finish() {
            case .memory(let kept): bytes = kept
            case .spilled(let file): return .readBack(route, parts, file)
            }
        } catch {
            return .answer(bodyStorageFailed(error))
        }
        let request = parts.request(body: bytes)
        if let immediate = route.immediate, let response = immediate(request) { return .answer(response) }
        switch route.work {
        case .blocking(let handler):
            return .block(handler, request)
        case .deferred(let handler):
            switch handler(request) {
            case .now(let response): return .answer(response)
            case .later(let start): return .later(start)
            case .laterOnPool(let start): return .laterOnPool(start)
            }
        }
    }
}

/// On a pool thread: the spilled body back into memory (its route accepted it), then the route's handler.
private func runReadBack(_ route: Router.Route, _ parts: RequestParts, _ file: SpilledBody, _ responder: Responder) {
    let request: Request
    do {
        request = parts.request(body: try file.read())
    } catch {
        responder.respond(bodyStorageFailed(error))
        return
    }
    if let immediate = route.immediate, let response = immediate(request) {
        responder.respond(response)
        return
    }
    switch route.work {
    case .blocking(let handler):
        responder.respond(handler(request))
    case .deferred(let handler):
        switch handler(request) {
        case .now(let response): responder.respond(response)
        // Already on a pool thread.
        case .later(let start), .laterOnPool(let start): start(responder)
        }
    }
}

private func payloadTooLarge(_ limit: Int) -> Response {
    .error(status: 413, code: "payload_too_large", message: "the request body is larger than \(limit) bytes")
}

/// The body budget is spent: a sender that retries (every webhook provider does) gets through shortly.
private func overBudget() -> Response {
    .error(status: 503, code: "server_busy", message: "too many request bodies are being received; retry later",
           headers: [("Retry-After", "5")])
}

/// The body could not be kept (disk full): nothing was handed to the route, so nothing was recorded.
private func bodyStorageFailed(_ error: BodyStoreError) -> Response {
    .error(status: 503, code: "body_storage_unavailable", message: "the request body could not be stored; retry later",
           headers: [("Retry-After", "30")])
}
