import CMicroHTTPD

// libmicrohttpd's C callbacks. Plain nonisolated functions (DESIGN §4): libmicrohttpd calls them on
// its own threads, so they must not inherit any actor isolation. Context arrives through
// Unmanaged pointers: `cls` is the ServerCore (unretained, owned by HTTPServer), `*con_cls` the
// RequestContext of the request (retained here, released in `microHTTPRequestCompleted`).

/// MHD_AccessHandlerCallback. libmicrohttpd calls it once when the headers are in (`*con_cls` is
/// nil), once per piece of body (`*upload_data_size` > 0), and once more when the request is
/// complete (`*upload_data_size` == 0); a response may only be queued on the first or last call.
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
        switch context.append(received, discardAllowance: core.configuration.maxDiscardBytes) {
        case .buffered, .discarded: return .YES
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
/// second call could not release it twice.
nonisolated func microHTTPRequestCompleted(
    _ cls: UnsafeMutableRawPointer?,
    _ connection: OpaquePointer?,
    _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ reason: MHD_RequestTerminationCode
) {
    guard let cls, let conCls, let slot = conCls.pointee else { return }
    conCls.pointee = nil
    Unmanaged<RequestContext>.fromOpaque(slot).release()
    Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue().inFlight.subtract(1, ordering: .releasing)
}

/// First call: route the request and decide, before reading any body, whether it can be answered
/// at once. Queuing a response now makes libmicrohttpd skip the body (and close the connection),
/// which is how an over-long Content-Length gets its 413 without the body being read.
private func beginRequest(
    _ core: ServerCore, _ connection: OpaquePointer, method: String, rawPath: String,
    conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>
) -> MHD_Result {
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

    let context = RequestContext(method: method, rawPath: rawPath, plan: plan, maxBodyBytes: maxBodyBytes,
                                 expectedBytes: contentLength)
    conCls.pointee = Unmanaged.passRetained(context).toOpaque()
    core.inFlight.add(1, ordering: .relaxed)

    let early: Response?
    switch plan {
    case .handle:
        early = (contentLength ?? 0) > maxBodyBytes ? payloadTooLarge(maxBodyBytes) : nil
    case .answer(let response):
        early = hasBody ? response : nil  // no point reading a body nobody will look at
    }
    guard let early else { return .YES }
    context.answeredEarly = true
    return queue(early, on: connection, draining: core.draining.load(ordering: .relaxed))
}

private enum Outcome {
    /// Queue this now.
    case answer(Response)
    /// Run this on the handler pool, the connection suspended meanwhile.
    case block(Handler, Request)
    /// Suspend the connection and give its responder to this.
    case later(@Sendable (Responder) -> Void)
}

/// Last call: the body is complete (or was over the limit and dropped). The request is built here, on
/// the event thread, because only it may read the connection's headers and arguments.
private func finish(_ core: ServerCore, _ context: RequestContext, _ connection: OpaquePointer) -> Outcome {
    if context.overLimit { return .answer(payloadTooLarge(context.maxBodyBytes)) }
    switch context.plan {
    case .answer(let response):
        return .answer(response)
    case .handle(let route, let parameters):
        let request = Request(
            method: context.method,
            path: context.rawPath,
            query: collectQuery(connection),
            headers: collectHeaders(connection),
            body: context.takeBody(),
            pathParameters: parameters,
            remoteAddress: clientAddress(connection)
        )
        if let immediate = route.immediate, let response = immediate(request) { return .answer(response) }
        switch route.work {
        case .blocking(let handler):
            return .block(handler, request)
        case .deferred(let handler):
            switch handler(request) {
            case .now(let response): return .answer(response)
            case .later(let start): return .later(start)
            }
        }
    }
}

private func payloadTooLarge(_ limit: Int) -> Response {
    .error(status: 413, code: "payload_too_large", message: "the request body is larger than \(limit) bytes")
}
