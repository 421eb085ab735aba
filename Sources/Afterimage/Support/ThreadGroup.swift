import Foundation

/// The threads of one daemon component: each named (it shows in `top -H`, gdb and core dumps), each with
/// a heartbeat registered while it runs, all counted so the component's `stop()` can wait for them with a
/// deadline.
///
/// Threads, not tasks: these loops block in libpq, libcurl and file I/O, and blocking Swift concurrency's
/// few cooperative threads (two on the 2-core machines this runs on) would starve the rest of the process.
final class ThreadGroup: Sendable {
    private let heartbeats: Heartbeats?
    private let running = DispatchGroup()
    /// Tolerance for heartbeats when no registry is given (components built alone, in tests).
    static let unregisteredTolerance: Duration = .seconds(3600)

    /// - Parameter heartbeats: where the threads' heartbeats are registered for the watchdog; nil keeps
    ///   them to the threads themselves.
    init(heartbeats: Heartbeats?) {
        self.heartbeats = heartbeats
    }

    /// Starts a thread named `name` that runs `body` once, handing it the thread's heartbeat (`heartbeat`
    /// when given: a component whose callbacks beat it makes it beforehand).
    func spawn(
        _ name: String, heartbeat given: Heartbeat? = nil, tolerance: Duration? = nil,
        _ body: @escaping @Sendable (Heartbeat) -> Void
    ) {
        let heartbeat: Heartbeat
        if let given {
            heartbeat = heartbeats?.register(given) ?? given
        } else {
            heartbeat =
                heartbeats?.register(name, tolerance: tolerance)
                ?? Heartbeat(name: name, tolerance: tolerance ?? Self.unregisteredTolerance)
        }
        running.enter()
        let thread = Thread { [heartbeats, running] in
            defer {
                heartbeats?.unregister(heartbeat)
                running.leave()
            }
            body(heartbeat)
        }
        thread.name = name
        thread.start()
    }

    /// The one shape of a periodic loop: a thread named `name` runs `body` at once, then again every
    /// `interval` seconds (counted from the start of each run) until `stop` is set; a stop ends the wait
    /// at once. `body` should itself return soon after a stop (it can check `stop.isStopped`).
    func repeating(
        _ name: String, every interval: TimeInterval, until stop: StopSignal, heartbeat: Heartbeat? = nil,
        tolerance: Duration? = nil, _ body: @escaping @Sendable (Heartbeat) -> Void
    ) {
        spawn(name, heartbeat: heartbeat, tolerance: tolerance) { heartbeat in
            while !stop.isStopped {
                let started = Date()
                heartbeat.beat()
                body(heartbeat)
                heartbeat.beat()
                stop.sleep(interval - Date().timeIntervalSince(started), heartbeat: heartbeat)
            }
        }
    }

    /// Waits until every thread has ended, at most `timeout`; false when some still run (they are left
    /// to finish on their own; the caller has given up waiting).
    @discardableResult
    func join(timeout: Duration) -> Bool {
        running.wait(timeout: .now() + timeout.timeInterval) == .success
    }

    /// Waits until every thread has ended.
    func join() { running.wait() }
}

extension Duration {
    /// Seconds as a TimeInterval, for Foundation and Dispatch APIs.
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
