import CMicroHTTPD
import Primitives
import Synchronization

/// What libmicrohttpd's callbacks need, shared by its event threads and the handler pool. Passed to C
/// as an unretained pointer: `HTTPServer` owns it and stops the daemon (which joins its threads) and the
/// pool before letting it go, so no callback can outlive it.
final class ServerCore: Sendable {
    let router: Router
    let configuration: HTTPServer.Configuration
    /// Where handlers that may block run while their connection is suspended.
    let handlers: HandlerPool
    /// Requests whose connections are suspended until their handler or responder answers, so a stop can
    /// answer what is still waiting at its deadline (libmicrohttpd must not be stopped with a connection
    /// suspended).
    let suspended = Mutex<[ObjectIdentifier: SuspendedRequest]>([:])
    /// How long the event threads have been inside our callbacks (the watchdog's view of them).
    let eventThreads = EventThreadWatch()
    /// Requests between their first access-handler call and their completion callback.
    let inFlight = Atomic<Int>(0)
    /// Set by quiesce: answers then carry `Connection: close` so keep-alive clients move away.
    let draining = Atomic<Bool>(false)
    /// True once the daemon is being stopped: a handler finishing after that must not resume its
    /// connection (libmicrohttpd closes it, and the pointer may be gone). Resumes happen under this lock.
    let resumeGate = Mutex(false)
    /// Body bytes held across all connections (`maxInflightBodyBytes`).
    let bodyBudget: BodyBudget
    /// Header and request deadlines of open connections.
    let deadlines: ConnectionDeadlines

    init(router: Router, configuration: HTTPServer.Configuration) {
        self.router = router
        self.configuration = configuration
        handlers = HandlerPool(maxThreads: configuration.connectionLimit)
        bodyBudget = BodyBudget(limit: configuration.maxInflightBodyBytes)
        deadlines = ConnectionDeadlines(
            headerTimeout: .seconds(configuration.headerTimeoutSeconds),
            requestTimeout: .seconds(configuration.requestTimeoutSeconds))
    }
}

/// A request whose connection is suspended while its answer is worked out elsewhere (a handler on the pool,
/// a deferred responder). `answer` queues the response and resumes the connection exactly once, whoever
/// calls it first: the handler, the responder, or a stop that reached its deadline.
final class SuspendedRequest: AnswerSink {
    private let core: ServerCore
    private let connection: SuspendedConnection
    private let pending: PendingResponse
    private let answered = Atomic<Bool>(false)

    /// Registers the request with `core`; call right after MHD_suspend_connection.
    init(core: ServerCore, connection: SuspendedConnection, pending: PendingResponse) {
        self.core = core
        self.connection = connection
        self.pending = pending
        core.suspended.withLock { $0[ObjectIdentifier(self)] = self }
    }

    var isAnswered: Bool { answered.load(ordering: .acquiring) }

    /// Queues `response` and resumes the connection (the event thread sends it). False when an answer
    /// was already given.
    @discardableResult
    func answer(_ response: Response) -> Bool {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        pending.set(response)
        core.resumeGate.withLock { stopping in
            if !stopping { MHD_resume_connection(connection.pointer) }
        }
        _ = core.suspended.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
        return true
    }
}

/// A pool thread's answer, handed to the event thread that resumes the connection.
final class PendingResponse: Sendable {
    private let slot = Mutex<Response?>(nil)
    func set(_ response: Response) { slot.withLock { $0 = response } }
    func take() -> Response? {
        slot.withLock { value in
            defer { value = nil }
            return value
        }
    }
}

/// Per-request state kept in libmicrohttpd's `con_cls` slot between the calls of the access
/// handler. Only the event thread serving the connection touches it (a pool thread only sees its
/// `pending` slot, and a spilled body once it is handed over), and it is released exactly once, by the
/// completion callback, which also clears the slot and returns its body budget.
final class RequestContext {
    /// Why a body is being read and thrown away instead of kept; the answer once it is complete.
    enum Refusal {
        /// Past the route's limit: 413.
        case tooLarge
        /// A chunked body that outgrew the server's body budget: 503.
        case overBudget
        /// The spill file could not be written (disk full): 503.
        case storageFailed(SystemCallError)
    }

    let method: String
    let rawPath: String
    let plan: Router.Plan
    let maxBodyBytes: Int
    /// The declared length; nil for a chunked body.
    let declaredLength: Int?
    /// Header fields, when the route's gate needed them (kept for the request so they are read once).
    var headers: [String: String]?
    /// The route's check over the body as it arrives, from its gate.
    var bodyCheck: BodyCheck?
    let body: BodyStore
    /// Bytes of the server's body budget this request holds.
    var reservedBytes = 0
    /// Set when the body is being discarded.
    private(set) var refusal: Refusal?
    /// Every body byte received, kept or not.
    private(set) var received = 0
    /// A response was queued on the first call; libmicrohttpd will not call the handler again.
    var answeredEarly = false
    /// The request went to the handler pool and its connection is suspended until `pending` is set.
    var dispatched = false
    let pending = PendingResponse()

    init(method: String, rawPath: String, plan: Router.Plan, maxBodyBytes: Int, declaredLength: Int?, body: BodyStore) {
        self.method = method
        self.rawPath = rawPath
        self.plan = plan
        self.maxBodyBytes = maxBodyBytes
        self.declaredLength = declaredLength
        self.body = body
    }

    enum Accepted {
        case kept
        /// Refused: the bytes were dropped; keep reading to answer once the body is complete.
        case discarded
        /// Refused and past the discard allowance: close the connection.
        case giveUp
    }

    /// Takes the next piece of the body, never holding more than `maxBodyBytes` of it, nor more than the
    /// budget grants a chunked body.
    func append(_ bytes: UnsafeRawBufferPointer, budget: BodyBudget, discardAllowance: Int) -> Accepted {
        received += bytes.count
        if refusal == nil {
            if body.count + bytes.count > maxBodyBytes {
                refuse(.tooLarge)
            } else if declaredLength == nil {
                // Chunked: no length was reserved up front, so each piece is reserved as it arrives.
                if budget.reserve(bytes.count) { reservedBytes += bytes.count } else { refuse(.overBudget) }
            }
        }
        if refusal == nil {
            do {
                try body.append(bytes)
                bodyCheck?.update(bytes)
                return .kept
            } catch {
                refuse(.storageFailed(error))
            }
        }
        return received - maxBodyBytes > discardAllowance ? .giveUp : .discarded
    }

    private func refuse(_ reason: Refusal) {
        refusal = reason
        bodyCheck = nil
        body.discard()  // free it now: a refused body must not hold memory or disk until the end
    }
}
