import CMicroHTTPD
import Primitives

// libmicrohttpd's C callbacks. Plain nonisolated free functions: libmicrohttpd calls them on its own
// event threads, so they must not inherit any actor isolation, and they must never block (every
// connection an event thread serves waits while it is inside one; docs/ARCHITECTURE.md, "Concurrency
// rules"). Context arrives through Unmanaged pointers: `cls` is the ServerCore (unretained, owned by
// HTTPServer), `*con_cls` the RequestContext of the request (retained here, released in
// `microHTTPRequestCompleted`).

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
    case .route(.answer(let response)):
        return queue(response, on: connection, draining: draining)
    case .route(.block(let run)):
        let suspended = suspend(connection, core, context)
        core.handlers.submit { suspended.answer(run()) }
        return .YES
    case .route(.later(let start)):
        start(Responder(suspend(connection, core, context)))
        return .YES
    case .route(.laterOnPool(let start)):
        let responder = Responder(suspend(connection, core, context))
        core.handlers.submit { start(responder) }
        return .YES
    case .readBack(let route, let parts, let body):
        // The body is on disk: reading tens of MiB back must not hold up the event thread, so the route
        // runs on the pool with a responder, whatever kind of handler it has.
        let responder = Responder(suspend(connection, core, context))
        core.handlers.submit { runReadBack(core.router, route, parts, body, responder) }
        return .YES
    }
}

/// Suspends the connection until its answer is ready (`SuspendedRequest.answer` resumes it).
private func suspend(_ connection: OpaquePointer, _ core: ServerCore, _ context: RequestContext) -> SuspendedRequest {
    context.dispatched = true
    MHD_suspend_connection(connection)
    return SuspendedRequest(core: core, connection: SuspendedConnection(pointer: connection), pending: context.pending)
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

    let plan = core.router.plan(method: method, rawPath: rawPath)
    var maxBodyBytes = 0
    if case .handle(let route, _) = plan { maxBodyBytes = route.maxBodyBytes ?? core.configuration.defaultMaxBodyBytes }

    let body = BodyStore(
        spillDirectory: core.configuration.bodySpillDirectory,
        spillThreshold: core.configuration.bodySpillThresholdBytes)
    let context = RequestContext(
        method: method, rawPath: rawPath, plan: plan, maxBodyBytes: maxBodyBytes,
        declaredLength: chunked ? nil : contentLength, body: body)
    conCls.pointee = Unmanaged.passRetained(context).toOpaque()
    core.inFlight.add(1, ordering: .relaxed)

    var early: Response?
    switch plan {
    case .handle(let route, _):
        if route.gate != nil {
            let headers = collectHeaders(connection)
            context.headers = headers
            let head = RequestHead(method: method, path: rawPath, headers: headers, contentLength: chunked ? nil : contentLength)
            switch core.router.admit(route, head) {
            case .refuse(let response): early = response
            case .admit(let check): context.bodyCheck = check
            }
        }
        if early == nil, (contentLength ?? 0) > maxBodyBytes { early = Refusal.payloadTooLarge(maxBodyBytes) }
        if early == nil, !chunked, let declared = contentLength, declared > 0 {
            if core.bodyBudget.reserve(declared) { context.reservedBytes = declared } else { early = Refusal.overBudget() }
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
    /// What the route (or a refusal) decided: an answer to queue now, or work to run with the connection
    /// suspended (a blocking handler on the pool, a responder given on this thread or on the pool).
    case route(Router.Dispatch)
    /// Suspend the connection; on the handler pool, read the spilled body back and run the route.
    case readBack(Router.Route, RequestParts, BodyFile)
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

    func request(body: [UInt8], bodyFile: BodyFile? = nil) -> Request {
        Request(
            method: method, path: path, query: query, headers: headers, body: body, bodyFile: bodyFile,
            pathParameters: pathParameters, remoteAddress: remoteAddress, bodyCheckResult: bodyCheckResult)
    }
}

/// Last call: the body is complete (or was refused and dropped).
private func finish(_ core: ServerCore, _ context: RequestContext, _ connection: OpaquePointer) -> Outcome {
    switch context.refusal {
    case .tooLarge: return .route(.answer(Refusal.payloadTooLarge(context.maxBodyBytes)))
    case .overBudget: return .route(.answer(Refusal.overBudget()))
    case .storageFailed(let error): return .route(.answer(Refusal.bodyStorageFailed(error)))
    case nil: break
    }
    if let check = context.bodyCheck, let refusal = check.finish() {
        context.body.discard()
        return .route(.answer(refusal))
    }
    switch context.plan {
    case .answer(let response):
        return .route(.answer(response))
    case .handle(let route, let parameters):
        let parts = RequestParts(
            method: context.method, path: context.rawPath, query: collectQuery(connection),
            headers: context.headers ?? collectHeaders(connection), pathParameters: parameters,
            remoteAddress: clientAddress(connection), bodyCheckResult: context.bodyCheck?.result)
        let request: Request
        do throws(SystemCallError) {
            switch try context.body.finish() {
            case .memory(let kept): request = parts.request(body: kept)
            case .spilled(let file) where route.bodyAsFile: request = parts.request(body: [], bodyFile: file)
            case .spilled(let file): return .readBack(route, parts, file)
            }
        } catch {
            return .route(.answer(Refusal.bodyStorageFailed(error)))
        }
        return .route(core.router.dispatch(route, request))
    }
}

/// On a pool thread: the spilled body back into memory (its route accepted it), then the route.
private func runReadBack(_ router: Router, _ route: Router.Route, _ parts: RequestParts, _ file: BodyFile, _ responder: Responder) {
    let request: Request
    do throws(SystemCallError) {
        request = parts.request(body: try file.read())
    } catch {
        responder.respond(Refusal.bodyStorageFailed(error))
        return
    }
    switch router.dispatch(route, request) {
    case .answer(let response): responder.respond(response)
    case .block(let run): responder.respond(run())
    // Already on a pool thread.
    case .later(let start), .laterOnPool(let start): start(responder)
    }
}
