import Dispatch
import Foundation
import Glibc
import Synchronization

/// Closes connections whose request is not in by its deadline: the head within `headerTimeout` and the
/// whole request (head and body) within `requestTimeout`, counted from when the connection was accepted
/// or, on a kept-alive connection, from when its previous request completed.
///
/// Why: libmicrohttpd's connection timeout counts inactivity only, so a client that sends one header byte
/// every few seconds keeps its connection, and a few hundred such clients hold every slot of the
/// connection limit while genuine clients wait in the kernel's listen backlog for ever. libmicrohttpd
/// 0.9.75 has no per-request deadline and no call to close a connection from outside its event thread, so
/// a timer thread here shuts the socket down (`shutdown(2)`): the event thread then sees the end of the
/// stream and closes the connection itself, through its usual path (completion callback included).
/// A connection whose request is with its handler has no deadline here (the handler's own timeouts
/// apply); neither has one whose answer is being sent.
///
/// Safety of `shutdown` on a descriptor owned by libmicrohttpd: entries are removed under the lock by the
/// connection-closed notification, which libmicrohttpd sends before it closes the descriptor, and the
/// timer shuts a descriptor down only under the same lock — so it can never reach a descriptor number
/// that was closed and reused.
final class ConnectionDeadlines: Sendable {
    enum Phase {
        /// Waiting for (the rest of) the next request's head.
        case awaitingHead
        /// The head is in; the body is arriving.
        case receivingBody
        /// The request is complete (or was answered early): its handler or its answer has the connection.
        case handling
    }

    private struct Entry {
        var fd: Int32
        var phase: Phase
        var since: ContinuousClock.Instant
        var shutDown = false
        /// A request was completed on it: while it awaits a head again it is an idle kept-alive
        /// connection, not a client that is about to send its first request.
        var servedOne = false
    }

    let headerTimeout: Duration
    let requestTimeout: Duration
    /// Connections shut down for a missed deadline since start (tests, metrics).
    let expired = Atomic<Int>(0)
    private let entries = Mutex<[UInt: Entry]>([:])
    private let stopping = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)

    init(headerTimeout: Duration, requestTimeout: Duration) {
        self.headerTimeout = headerTimeout
        self.requestTimeout = requestTimeout
    }

    /// How often deadlines are looked at: a quarter of the shortest one, between 50 ms and 1 s.
    var tick: Duration {
        let quarter = min(headerTimeout, requestTimeout) / 4
        return min(max(quarter, .milliseconds(50)), .seconds(1))
    }

    func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in
            let tick = self.tick
            let nanoseconds = Int(tick.components.seconds) * 1_000_000_000 + Int(tick.components.attoseconds / 1_000_000_000)
            while !stopping.load(ordering: .acquiring) {
                _ = wake.wait(timeout: .now() + .nanoseconds(nanoseconds))
                sweep(now: .now)
            }
            exited.signal()
        }
        thread.name = "http-deadlines"
        thread.stackSize = 256 * 1024
        thread.start()
    }

    /// Stops the timer thread and waits for it; connections keep whatever deadline state they had.
    func stop() {
        guard running.load(ordering: .acquiring), !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake.signal()
        exited.wait()
    }

    private static func key(_ connection: OpaquePointer) -> UInt { UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection))) }

    /// Connections open now.
    var count: Int { entries.withLock { $0.count } }

    /// Connections that owe their client an answer: accepted and still waiting for their first
    /// request, or with a request arriving, handled or being answered. A graceful stop waits for these
    /// (bounded by its drain timeout) so that a client accepted just before the listening socket
    /// closed is answered instead of seeing its connection dropped mid-request; idle kept-alive
    /// connections are not counted (a client reusing one must expect it closed, as HTTP allows).
    var owingAnAnswer: Int {
        entries.withLock { entries in
            entries.values.reduce(0) { $0 + ($1.phase == .awaitingHead && $1.servedOne ? 0 : 1) }
        }
    }

    func opened(_ connection: OpaquePointer, fd: Int32) {
        guard fd >= 0 else { return }
        entries.withLock { $0[Self.key(connection)] = Entry(fd: fd, phase: .awaitingHead, since: .now) }
    }

    func closed(_ connection: OpaquePointer) {
        _ = entries.withLock { $0.removeValue(forKey: Self.key(connection)) }
    }

    /// The head is in: from now only the request deadline applies, counted from the same start.
    func headReceived(_ connection: OpaquePointer) {
        entries.withLock { entries in
            entries[Self.key(connection)]?.phase = .receivingBody
        }
    }

    func handling(_ connection: OpaquePointer) {
        entries.withLock { entries in
            entries[Self.key(connection)]?.phase = .handling
        }
    }

    /// The answer went out; a kept-alive connection now waits for its next request's head.
    func requestCompleted(_ connection: OpaquePointer) {
        entries.withLock { entries in
            let key = Self.key(connection)
            guard entries[key] != nil else { return }
            entries[key]!.phase = .awaitingHead
            entries[key]!.since = .now
            entries[key]!.servedOne = true
        }
    }

    /// Shuts down every connection past its deadline.
    func sweep(now: ContinuousClock.Instant) {
        entries.withLock { entries in
            for (key, entry) in entries where !entry.shutDown {
                let limit: Duration
                switch entry.phase {
                case .awaitingHead: limit = min(headerTimeout, requestTimeout)
                case .receivingBody: limit = requestTimeout
                case .handling: continue
                }
                guard now - entry.since > limit else { continue }
                entries[key]!.shutDown = true
                expired.add(1, ordering: .releasing)  // counted first: whoever sees the close sees the count
                _ = shutdown(entry.fd, Int32(SHUT_RDWR))
            }
        }
    }
}
