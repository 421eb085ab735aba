import CMicroHTTPD
import Glibc
import Synchronization

/// An HTTP/1.1 server over libmicrohttpd 0.9.75.
///
/// Threading: a few event threads (libmicrohttpd's internal thread pool, epoll on Linux) do all the
/// socket work for every connection and answer what needs no waiting (`Router.add(immediate:)`).
/// Handlers that may block (the database, a group commit) run on `HandlerPool` threads while their
/// connection is suspended (MHD_suspend_connection / MHD_resume_connection). Thread per connection,
/// this server's first version, put 64 runnable threads on two cores under load and let the scheduler decide
/// the order of answers (bench/lookup: p99 ten times the mean); this keeps the runnable set small.
/// The connection limit bounds the pool's threads.
///
/// Against clients that are not what they claim: a route's gate (`RequestGate`) may refuse a request from
/// its head before any body byte is read and check the body as it arrives (`BodyCheck`); the bytes of all
/// bodies held at once are bounded (`maxInflightBodyBytes`, 503 + Retry-After past it); bodies over
/// `bodySpillThresholdBytes` wait on disk, not in memory; and a timer closes connections whose head or
/// request misses its deadline (`ConnectionDeadlines`), which libmicrohttpd's idle timeout cannot.
public final class HTTPServer: Sendable {
    public struct Configuration: Sendable {
        /// Address to bind (numeric or a name resolved once at start).
        public var host: String
        /// Port to bind; 0 asks the kernel for a free one (read it back from `boundPort`).
        public var port: Int
        /// An already listening socket to serve instead of binding (systemd socket activation).
        public var listeningSocket: Int32?
        /// Idle seconds after which a connection is closed; libmicrohttpd's default is never,
        /// which lets slow or silent clients hold a thread forever.
        public var connectionTimeoutSeconds: Int
        /// Most connections served at once (and so handler threads); past it libmicrohttpd stops accepting
        /// and new clients wait in the kernel's listen backlog.
        public var connectionLimit: Int
        /// Most connections from one client address; 0 for no limit. Behind a proxy every client has the
        /// proxy's address, so there it limits the proxy, not the clients.
        public var perIPConnectionLimit: Int
        /// Seconds in which a request's head must be complete, counted from when the connection was accepted
        /// (or its previous request completed); a connection past it is closed. Inactivity alone
        /// (`connectionTimeoutSeconds`) cannot stop a client that sends a byte now and then.
        public var headerTimeoutSeconds: Int
        /// Seconds in which the whole request, head and body, must be in, counted from the same start.
        public var requestTimeoutSeconds: Int
        /// Body limit for routes that do not set their own.
        public var defaultMaxBodyBytes: Int
        /// Request body bytes held at once across all connections (see `BodyBudget`); a request that does
        /// not fit is answered 503 with `Retry-After`.
        public var maxInflightBodyBytes: Int
        /// Where bodies larger than `bodySpillThresholdBytes` are kept while they arrive (unnamed files,
        /// gone when closed); nil keeps every body in memory.
        public var bodySpillDirectory: String?
        /// Bodies up to this size stay in memory; larger ones go to `bodySpillDirectory`.
        public var bodySpillThresholdBytes: Int
        /// libmicrohttpd event threads; 0 picks one per processor (at least 2). More than the cores let the
        /// scheduler interleave them with everything else and lengthened the tail (bench/lookup: p99 9–10 ms
        /// with 2 per core, 5 ms with 1).
        public var eventThreads: Int
        /// How much of an oversized chunked body is read and thrown away so the client can still
        /// be told 413 (libmicrohttpd only lets a response be queued once the body is complete).
        /// Past it the connection is closed without an answer.
        public var maxDiscardBytes: Int

        /// The values the server accepts; the configuration loader checks against the same ranges.
        public static let connectionLimitRange = 1...65_536
        public static let perIPConnectionLimitRange = 0...65_536
        public static let connectionTimeoutRange = 1...86_400
        public static let headerTimeoutRange = 1...3600
        public static let requestTimeoutRange = 1...3600
        public static let maxInflightBodyBytesRange = 1024...(1 << 40)

        public init(
            host: String = "127.0.0.1", port: Int = 8080, listeningSocket: Int32? = nil,
            connectionTimeoutSeconds: Int = 30, connectionLimit: Int = 256, perIPConnectionLimit: Int = 0,
            headerTimeoutSeconds: Int = 10, requestTimeoutSeconds: Int = 30,
            defaultMaxBodyBytes: Int = 1_048_576, maxInflightBodyBytes: Int = 256 << 20,
            bodySpillDirectory: String? = nil, bodySpillThresholdBytes: Int = 1 << 20,
            maxDiscardBytes: Int = 1_048_576, eventThreads: Int = 0
        ) {
            self.host = host
            self.port = port
            self.listeningSocket = listeningSocket
            self.connectionTimeoutSeconds = connectionTimeoutSeconds
            self.connectionLimit = connectionLimit
            self.perIPConnectionLimit = perIPConnectionLimit
            self.headerTimeoutSeconds = headerTimeoutSeconds
            self.requestTimeoutSeconds = requestTimeoutSeconds
            self.defaultMaxBodyBytes = defaultMaxBodyBytes
            self.maxInflightBodyBytes = maxInflightBodyBytes
            self.bodySpillDirectory = bodySpillDirectory
            self.bodySpillThresholdBytes = bodySpillThresholdBytes
            self.maxDiscardBytes = maxDiscardBytes
            self.eventThreads = eventThreads
        }

        var resolvedEventThreads: Int {
            // libmicrohttpd splits the connection limit among its event threads: never more threads than that.
            min(connectionLimit, eventThreads > 0 ? eventThreads : max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
        }
    }

    /// The daemon pointer. @unchecked Sendable: libmicrohttpd's daemon functions used here
    /// (get_daemon_info, quiesce, stop) may be called from any thread, and we call the state-
    /// changing ones only while holding `state`'s lock or after taking the pointer out of it.
    private struct DaemonHandle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private enum Phase { case idle, running, quiesced, stopped }

    private struct State {
        var phase = Phase.idle
        var daemon: DaemonHandle?
        var boundPort = 0
    }

    private let core: ServerCore
    private let state = Mutex(State())

    public init(router: Router, configuration: Configuration) {
        core = ServerCore(router: router, configuration: configuration)
    }

    deinit {
        // Joins the event threads, so no callback can run once `core` is released.
        if let daemon = state.withLock({ $0.daemon }) {
            Self.waitForHandlers(core)
            core.deadlines.stop()
            core.resumeGate.withLock { $0 = true }
            MHD_stop_daemon(daemon.pointer)
        }
        core.handlers.shutdown()
    }

    /// libmicrohttpd must not be stopped while a connection is suspended: handlers still running and
    /// responders not yet answered are waited for, each resuming its connection when done. Without a
    /// deadline their own timeouts must bound the wait; at `deadline` the requests still waiting are
    /// answered 503 here (their handlers' later answers are ignored), which resumes their connections.
    private static func waitForHandlers(_ core: ServerCore, until deadline: ContinuousClock.Instant? = nil) {
        while core.suspended.withLock({ !$0.isEmpty }) {
            if let deadline, ContinuousClock.now >= deadline {
                let waiting = core.suspended.withLock { Array($0.values) }
                for request in waiting {
                    request.answer(
                        .error(
                            status: 503, code: "stopping", message: "the server is stopping; retry later",
                            headers: [("Retry-After", "5")]))
                }
                return
            }
            usleep(5_000)
        }
    }

    /// Binds (or adopts the inherited socket) and starts serving on libmicrohttpd's threads.
    public func start() throws(HTTPServerError) {
        let configuration = core.configuration
        try validate(configuration)
        try state.withLock { state throws(HTTPServerError) in
            guard state.phase == .idle else {
                throw HTTPServerError(.alreadyStarted, "the HTTP server was already started (a stopped server cannot be restarted)")
            }
            let daemon = try startDaemon(configuration)
            state.daemon = DaemonHandle(pointer: daemon)
            state.boundPort = Int(cmhd_daemon_bound_port(daemon))
            state.phase = .running
        }
        core.deadlines.start()
    }

    /// The port actually listened on (the kernel's choice when port 0 was configured); 0 before start.
    public var boundPort: Int { state.withLock { $0.boundPort } }

    /// Requests begun and not yet completed (for drain decisions and metrics).
    public var inFlightRequests: Int { core.inFlight.load(ordering: .acquiring) }

    /// Body bytes the in-flight requests hold of `maxInflightBodyBytes`.
    public var inFlightBodyBytes: Int { core.bodyBudget.inUse }

    /// Connections open now (accepted and not yet closed).
    public var openConnections: Int { core.deadlines.count }

    /// Connections closed because their head or request missed its deadline, since start.
    public var connectionsPastDeadline: Int { core.deadlines.expired.load(ordering: .relaxed) }
    /// How long the busiest event thread has been inside one of the server's callbacks right now (zero
    /// when none is in one). Callbacks never block, so a long time here means a wedged event thread: a
    /// watchdog's liveness check.
    public var longestEventThreadCallback: Duration { core.eventThreads.longestBusy() }

    /// Stops accepting connections and closes the listening socket, so new clients are refused
    /// (and, under systemd socket activation, queue in systemd's copy for the next instance)
    /// while requests already received are still served. Answers from now on carry
    /// `Connection: close` so keep-alive clients do not linger.
    public func quiesce() {
        state.withLock { state in
            guard state.phase == .running, let daemon = state.daemon else { return }
            core.draining.store(true, ordering: .relaxed)
            // MHD gives the listening socket back to us; it is ours to close in both cases: a
            // socket inherited from systemd is a duplicate, systemd keeps its own.
            let listener = MHD_quiesce_daemon(daemon.pointer)
            if listener >= 0 { close(listener) }
            state.phase = .quiesced
        }
    }

    /// Graceful stop: quiesce, wait until in-flight requests finish or `drainTimeout` passes, then
    /// stop the daemon, which closes remaining connections. "In flight" includes connections accepted
    /// before the listening socket closed whose request has not arrived yet: under socket activation a
    /// sender whose connection the old process accepted cannot be handed to the next one, so dropping
    /// it would turn a webhook into a send failure (a client that never sends is bounded by the
    /// header timeout and `drainTimeout`). Requests still waiting for a handler or a
    /// responder are waited for until `handlerDeadline` after the stop began, then answered 503 +
    /// `Retry-After` by the server itself (a suspended connection must be resumed before the daemon
    /// stops), so the stop is bounded whatever the handlers do. Without `handlerDeadline` they are waited
    /// for as long as they take: their own timeouts must then bound the stop. Never call it from a
    /// handler: it would wait for itself.
    public func stop(drainTimeout: Duration = .seconds(10), handlerDeadline: Duration? = nil) {
        let clock = ContinuousClock()
        let began = clock.now
        quiesce()
        let deadline = began + drainTimeout
        while core.inFlight.load(ordering: .acquiring) > 0 || core.deadlines.owingAnAnswer > 0, clock.now < deadline {
            usleep(5_000)  // polling counters: 5 ms is short against any request, cheap on CPU
        }
        let answerBy = handlerDeadline.map { began + $0 }
        Self.waitForHandlers(core, until: answerBy)
        // Give the event threads a moment to send what was just answered (by a handler, a responder or
        // the 503 above) before the daemon closes every connection: a resumed connection's answer is
        // queued, not yet written, when its responder returns. A request completes once its answer is
        // sent, so the in-flight count says when; one second bounds a client that reads slowly.
        let flushBy = clock.now + .seconds(1)
        while core.inFlight.load(ordering: .acquiring) > 0, clock.now < flushBy { usleep(5_000) }
        let daemon = state.withLock { state -> DaemonHandle? in
            defer {
                state.daemon = nil
                state.phase = .stopped
            }
            return state.daemon
        }
        if let daemon {
            // A handler that finished after the wait above resumed its connection: let the event
            // thread queue that answer before the daemon closes everything. Any handler still running
            // after this (a request on a kept-alive connection that arrived meanwhile) will not resume.
            Self.waitForHandlers(core, until: answerBy)
            core.deadlines.stop()
            core.resumeGate.withLock { $0 = true }
            MHD_stop_daemon(daemon.pointer)
        }
    }

    private func validate(_ c: Configuration) throws(HTTPServerError) {
        func check(_ ok: Bool, _ message: String) throws(HTTPServerError) {
            if !ok { throw HTTPServerError(.invalidConfiguration, message) }
        }
        try check((0...65535).contains(c.port), "http.port must be between 0 and 65535, got \(c.port)")
        func range(_ value: Int, _ range: ClosedRange<Int>, _ what: String) throws(HTTPServerError) {
            try check(range.contains(value), "\(what) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
        try range(c.connectionTimeoutSeconds, Configuration.connectionTimeoutRange, "the connection timeout (seconds)")
        try range(c.connectionLimit, Configuration.connectionLimitRange, "the connection limit")
        try range(c.perIPConnectionLimit, Configuration.perIPConnectionLimitRange, "the per-address connection limit")
        try range(c.headerTimeoutSeconds, Configuration.headerTimeoutRange, "the header timeout (seconds)")
        try range(c.requestTimeoutSeconds, Configuration.requestTimeoutRange, "the request timeout (seconds)")
        try check(c.headerTimeoutSeconds <= c.requestTimeoutSeconds, "the header timeout must not exceed the request timeout")
        try range(c.maxInflightBodyBytes, Configuration.maxInflightBodyBytesRange, "the in-flight body budget (bytes)")
        try check(c.bodySpillThresholdBytes >= 0, "the body spill threshold must not be negative")
        try check(c.defaultMaxBodyBytes >= 0, "http.max_body_bytes must not be negative")
        try check(c.maxDiscardBytes >= 0, "the discard allowance must not be negative")
        if let fd = c.listeningSocket { try check(fd >= 0, "the inherited listening socket \(fd) is not a descriptor") }
    }

    private func startDaemon(_ c: Configuration) throws(HTTPServerError) -> OpaquePointer {
        // Internal event threads (a pool of them, MHD_OPTION_THREAD_POOL_SIZE) on epoll: never select(),
        // which fails on descriptors above FD_SETSIZE (1024) that a busy daemon with a database pool and
        // spool files reaches. MHD_ALLOW_SUSPEND_RESUME (implies MHD_USE_ITC, which MHD_quiesce_daemon also
        // needs) for handlers that run on the pool.
        let polling = MHD_USE_EPOLL.rawValue
        var flags = MHD_USE_INTERNAL_POLLING_THREAD.rawValue | polling | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_USE_ITC.rawValue
        var address: SocketAddress?
        if c.listeningSocket == nil {
            address = try SocketAddress(host: c.host, port: c.port)
            if address!.isIPv6 { flags |= MHD_USE_IPv6.rawValue }
        }
        let context = Unmanaged.passUnretained(core).toOpaque()
        var options = cmhd_daemon_options()
        options.flags = UInt32(flags)
        options.port = c.listeningSocket == nil ? UInt16(c.port) : 0
        options.listen_fd = c.listeningSocket ?? -1
        options.connection_timeout_seconds = UInt32(c.connectionTimeoutSeconds)
        options.connection_limit = UInt32(c.connectionLimit)
        options.per_ip_connection_limit = UInt32(c.perIPConnectionLimit)
        options.keep_url_escaped = 1
        options.thread_pool_size = UInt32(c.resolvedEventThreads)
        options.access_handler = microHTTPAccessHandler
        options.access_handler_context = context
        options.request_completed = microHTTPRequestCompleted
        options.request_completed_context = context
        options.notify_connection = microHTTPConnectionNotified
        options.notify_connection_context = context

        let daemon: OpaquePointer?
        if var address {
            daemon = withUnsafePointer(to: &address.storage) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddr in
                    options.bind_address = sockaddr
                    return cmhd_start_daemon(&options)
                }
            }
        } else {
            daemon = cmhd_start_daemon(&options)
        }
        guard let daemon else {
            let target = c.listeningSocket.map { "inherited socket \($0)" } ?? "\(c.host):\(c.port)"
            throw HTTPServerError(.startFailed, "libmicrohttpd could not start on \(target) (address in use, bad socket or no threads)")
        }
        return daemon
    }
}
