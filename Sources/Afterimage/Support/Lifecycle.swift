import Foundation
import Logging
import Synchronization

/// A long-running part of the daemon (the HTTP server, the intake committers, the archive workers, the
/// watchdog, …). Every part has this one shape so `Lifecycle` can start them in order and stop them in
/// exact reverse order, each stop bounded.
public protocol DaemonComponent: AnyObject, Sendable {
    /// Names the part in logs ("http server", "archive workers").
    var name: String { get }
    /// The longest `stop()` may take, its own deadlines added up. The sum over the daemon's parts is its
    /// stop budget, which the unit's `TimeoutStopSec=` must exceed.
    var stopBudget: Duration { get }
    /// Starts the part's threads and returns. Must not wait for the database or the network: the daemon
    /// serves (503s) while they are away.
    func start() throws
    /// Stops the part within `stopBudget`. Called at most once, and only after `start()` succeeded.
    func stop()
}

/// Starts components in order and stops them in exact reverse order, each stop bounded.
///
/// Why not swift-service-lifecycle's `ServiceGroup` (whose `UnixSignals` `serve` does use): a
/// ServiceGroup runs its services as concurrent tasks, all at once, and bounds only the whole graceful
/// shutdown. The daemon's parts are threads with blocking starts and stops that must happen one after the
/// other (the server only once the committers run; the committers stopped only once the server answered
/// everything), and each stop needs its own deadline; wrapping each in an async service would block the
/// cooperative pool during stops. The rule is the same: start in order, stop in reverse.
public final class Lifecycle: Sendable {
    public let components: [any DaemonComponent]
    private let logger: Logger
    /// How many components, from the front, have started (and so need stopping).
    private let started = Mutex<Int>(0)
    /// Added to each component's budget before the lifecycle stops waiting for it.
    static let grace: Duration = .seconds(1)

    public init(_ components: [any DaemonComponent], logger: Logger) {
        self.components = components
        self.logger = logger
    }

    /// The most `stop()` can take: every component's budget plus the grace.
    public var stopBudget: Duration {
        components.reduce(.zero) { $0 + $1.stopBudget + Self.grace }
    }

    /// Starts each component in order. If one fails, those already started are stopped (in reverse)
    /// and the error is rethrown.
    public func start() throws {
        for component in components {
            do {
                try component.start()
            } catch {
                logger.error("start failed", metadata: ["component": "\(component.name)", "error": "\(error)"])
                stop()
                throw error
            }
            started.withLock { $0 += 1 }
        }
    }

    /// Stops the started components in reverse order. Each stop runs on a thread of its own and is waited
    /// for at most its budget plus a second: a stop that overruns is logged and left behind, so the
    /// daemon's exit is never held up by one part.
    public func stop() {
        let count = started.withLock { count in
            defer { count = 0 }
            return count
        }
        for component in components.prefix(count).reversed() {
            let began = ContinuousClock.now
            let done = DispatchSemaphore(value: 0)
            let thread = Thread {
                component.stop()
                done.signal()
            }
            thread.name = "afterimage-stop"
            thread.start()
            let budget = component.stopBudget + Self.grace
            if done.wait(timeout: .now() + budget.timeInterval) == .timedOut {
                logger.error(
                    "stop overran its budget; going on without it",
                    metadata: ["component": "\(component.name)", "budget": "\(budget)"])
            } else {
                logger.debug("stopped", metadata: ["component": "\(component.name)", "took": "\(ContinuousClock.now - began)"])
            }
        }
    }
}
