import Dispatch
import Synchronization

/// A fixed number of connections shared by threads, each connection lent to one thread at a time.
///
/// Connections are made lazily, on the first check-out that finds none idle. A caller that finds
/// every connection busy waits, in FIFO order, at most `acquireTimeout` (on a semaphore, no
/// polling) and then gets `poolTimeout`: callers such as webhook handlers can answer 503 instead
/// of piling up.
///
/// After PostgreSQL restarts, idle connections are dead. Check-out probes an idle connection
/// (a zero-timeout poll, no round trip) and replaces it when libpq sees it closed; and when a call
/// still fails with `connectionLost`, the pool drops all its other idle connections too, since
/// they point at the same server. So at most one call fails per restart.
///
/// A pool made with `admitting: false` refuses every check-out at once (`connectionFailed`) until
/// `startAdmitting()`: an application that must first bring the schema up to date can serve "retry
/// later" meanwhile instead of letting callers wait on, or use, a database that is not ready.
public final class Pool: Sendable {
    private let url: String
    private let size: Int
    private let acquireTimeout: Duration
    private let connectTimeoutSeconds: Int
    private let limits: SessionLimits
    private let admitting: Atomic<Bool>
    private let state: Mutex<State>

    /// What a waiting caller is given when a connection frees up.
    private enum Grant {
        case connection(Connection)
        /// Permission to open a new connection in a freed slot.
        case slot
        case closed
    }

    private struct Waiter {
        let id: UInt64
        let semaphore: DispatchSemaphore
    }

    private struct State {
        var idle: [Connection] = []
        /// Connections that exist or are being opened, idle or not; never more than `size`.
        var open = 0
        var waiters: [Waiter] = []
        /// Grants handed to waiters that have not yet picked them up, by waiter id.
        var grants: [UInt64: Grant] = [:]
        var nextWaiterID: UInt64 = 0
        var closed = false

        /// Hands a grant to the longest-waiting caller; false when nobody waits.
        mutating func grantToWaiter(_ grant: Grant) -> DispatchSemaphore? {
            guard !waiters.isEmpty else { return nil }
            let waiter = waiters.removeFirst()
            grants[waiter.id] = grant
            return waiter.semaphore
        }
    }

    /// - Parameters:
    ///   - url: libpq URI; kept private and never put in errors.
    ///   - size: the most connections open at once (at least 1).
    ///   - acquireTimeout: how long a caller waits for a busy pool before `poolTimeout`. Opening a
    ///     new connection is bounded separately, by `connectTimeoutSeconds`.
    ///   - limits: deadlines of every session the pool opens.
    ///   - admitting: false refuses check-outs until `startAdmitting()`.
    public init(
        url: String, size: Int, acquireTimeout: Duration = .seconds(2), connectTimeoutSeconds: Int = 5,
        limits: SessionLimits = SessionLimits(), admitting: Bool = true
    ) {
        precondition(size >= 1, "a pool needs at least one connection")
        self.url = url
        self.size = size
        self.acquireTimeout = acquireTimeout
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.limits = limits
        self.admitting = Atomic(admitting)
        self.state = Mutex(State())
    }

    /// Lets check-outs through from now on (see `admitting` in `init`).
    public func startAdmitting() { admitting.store(true, ordering: .releasing) }

    /// False until `startAdmitting()` for a pool made with `admitting: false`.
    public var isAdmitting: Bool { admitting.load(ordering: .acquiring) }

    deinit {
        close()
    }

    /// Lends a connection to `body` and takes it back afterwards, whatever `body` does.
    ///
    /// Throws `poolTimeout` when no connection frees up within the acquire timeout,
    /// `connectionFailed` when a new connection cannot be opened, `poolClosed` after `close()`,
    /// and otherwise whatever `body` throws. A transaction `body` leaves open is rolled back
    /// before the connection is reused.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try acquire()
        let value: T
        do {
            value = try body(connection)
        } catch {
            let lost = (error as? PQError)?.code == .connectionLost
            release(connection, dropIdle: lost)
            throw error
        }
        release(connection, dropIdle: false)
        return value
    }

    /// Finishes every idle connection and refuses later calls with `poolClosed`; connections in use
    /// are finished when they come back. Waiting callers get `poolClosed` at once.
    public func close() {
        let (idle, semaphores) = state.withLock { state -> ([Connection], [DispatchSemaphore]) in
            state.closed = true
            let idle = state.idle
            state.idle = []
            state.open -= idle.count
            var semaphores: [DispatchSemaphore] = []
            while let semaphore = state.grantToWaiter(.closed) { semaphores.append(semaphore) }
            return (idle, semaphores)
        }
        for connection in idle { connection.close() }
        for semaphore in semaphores { semaphore.signal() }
    }

    /// A snapshot for metrics: `inUse` counts lent connections and ones being opened.
    public var stats: (size: Int, idle: Int, inUse: Int, waiting: Int) {
        state.withLock { state in (size, state.idle.count, state.open - state.idle.count, state.waiters.count) }
    }

    // MARK: check-out and check-in

    private enum Checkout {
        case grant(Grant)
        case wait(Waiter)
    }

    private func acquire() throws(PQError) -> Connection {
        guard admitting.load(ordering: .acquiring) else {
            throw PQError(code: .connectionFailed, message: "the database is not ready yet (waiting to connect and apply migrations)")
        }
        let checkout = state.withLock { state -> Checkout in
            if state.closed { return .grant(.closed) }
            if let connection = state.idle.popLast() { return .grant(.connection(connection)) }
            if state.open < size {
                state.open += 1
                return .grant(.slot)
            }
            let waiter = Waiter(id: state.nextWaiterID, semaphore: DispatchSemaphore(value: 0))
            state.nextWaiterID &+= 1
            state.waiters.append(waiter)
            return .wait(waiter)
        }
        let grant: Grant
        switch checkout {
        case .grant(let granted):
            grant = granted
        case .wait(let waiter):
            grant = try waitForGrant(waiter)
        }
        switch grant {
        case .closed:
            throw PQError(code: .poolClosed, message: "the connection pool is closed")
        case .connection(let connection):
            if connection.probeIdle() { return connection }
            connection.close()  // dead (the server restarted or dropped it): replace it in its slot
            return try openInSlot()
        case .slot:
            return try openInSlot()
        }
    }

    /// Waits for a grant until the acquire timeout; on timeout, leaves the queue unless a grant
    /// raced in (a releaser grants under the lock and signals after it), in which case it is taken.
    private func waitForGrant(_ waiter: Waiter) throws(PQError) -> Grant {
        let deadline = DispatchTime.now() + Self.dispatchInterval(acquireTimeout)
        _ = waiter.semaphore.wait(timeout: deadline)
        let grant = state.withLock { state -> Grant? in
            if let grant = state.grants.removeValue(forKey: waiter.id) { return grant }
            state.waiters.removeAll { $0.id == waiter.id }
            return nil
        }
        guard let grant else {
            throw PQError(code: .poolTimeout, message: "no database connection became free within \(acquireTimeout)")
        }
        return grant
    }

    /// Opens a connection in a slot already counted in `open`; on failure gives the slot back
    /// (to a waiter, who will try for itself, or to the pool).
    private func openInSlot() throws(PQError) -> Connection {
        do {
            return try Connection.connect(url: url, connectTimeoutSeconds: connectTimeoutSeconds, limits: limits)
        } catch {
            freeSlot(dropIdle: false)
            throw error
        }
    }

    /// Takes a connection back. After `connectionLost` (`dropIdle`) the connection itself is not
    /// trusted either, even if libpq has not marked it bad yet.
    private func release(_ connection: Connection, dropIdle: Bool) {
        guard !dropIdle, connection.resetForReuse() else {
            let broken = connection.isBroken
            connection.close()
            freeSlot(dropIdle: dropIdle || broken)
            return
        }
        let (toClose, semaphore) = state.withLock { state -> (Connection?, DispatchSemaphore?) in
            if state.closed {
                state.open -= 1
                return (connection, nil)
            }
            if let semaphore = state.grantToWaiter(.connection(connection)) { return (nil, semaphore) }
            state.idle.append(connection)
            return (nil, nil)
        }
        toClose?.close()
        semaphore?.signal()
    }

    /// Gives back a slot whose connection is gone; `dropIdle` also finishes the idle connections,
    /// which point at the same (probably restarted) server.
    private func freeSlot(dropIdle: Bool) {
        let (toClose, semaphore) = state.withLock { state -> ([Connection], DispatchSemaphore?) in
            var toClose: [Connection] = []
            if dropIdle {
                toClose = state.idle
                state.open -= state.idle.count
                state.idle = []
            }
            if !state.closed, let semaphore = state.grantToWaiter(.slot) { return (toClose, semaphore) }
            state.open -= 1
            return (toClose, nil)
        }
        for idle in toClose { idle.close() }
        semaphore?.signal()
    }

    private static func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !nanoseconds.overflow, seconds >= 0 else { return seconds < 0 ? .nanoseconds(0) : .never }
        return .nanoseconds(Int(clamping: nanoseconds.partialValue + attoseconds / 1_000_000_000))
    }
}
