import Foundation
import Glibc
import Synchronization

/// Proof that one of the daemon's own loops still goes round. The loop beats whenever it makes progress
/// and while it waits (a bounded wait always comes back); the watchdog asks `Heartbeats.stalled()` and
/// stops pinging systemd once a loop has been silent for longer than its tolerance, so systemd restarts
/// a daemon with a wedged thread. The database's health plays no part: a loop waiting out an outage
/// still beats.
public final class Heartbeat: Sendable {
    public let name: String
    /// How long the loop may be silent: longer than the longest single step it takes between beats
    /// (a statement bounded by `database.statement_timeout_ms`, a connection attempt, a commit).
    public let tolerance: Duration
    private let last = Atomic<Int64>(MonotonicClock.nanoseconds())

    public init(name: String, tolerance: Duration) {
        self.name = name
        self.tolerance = tolerance
    }

    /// The loop is alive now.
    public func beat() { last.store(MonotonicClock.nanoseconds(), ordering: .relaxed) }

    /// Time since the last beat.
    func silence(now: Int64 = MonotonicClock.nanoseconds()) -> Duration {
        .nanoseconds(max(0, now - last.load(ordering: .relaxed)))
    }
}

/// Every heartbeat of the running daemon: threads register theirs when they start and remove it when they
/// end, so a loop that ended on purpose (a stopped component) is not mistaken for a stalled one.
public final class Heartbeats: Sendable {
    /// The tolerance of heartbeats registered without their own.
    public let defaultTolerance: Duration
    private let registered = Mutex<[ObjectIdentifier: Heartbeat]>([:])

    public init(defaultTolerance: Duration) {
        self.defaultTolerance = defaultTolerance
    }

    func register(_ name: String, tolerance: Duration? = nil) -> Heartbeat {
        register(Heartbeat(name: name, tolerance: tolerance ?? defaultTolerance))
    }

    /// Registers a heartbeat made beforehand (by a component whose callbacks beat it).
    @discardableResult
    func register(_ heartbeat: Heartbeat) -> Heartbeat {
        heartbeat.beat()
        registered.withLock { $0[ObjectIdentifier(heartbeat)] = heartbeat }
        return heartbeat
    }

    func unregister(_ heartbeat: Heartbeat) {
        _ = registered.withLock { $0.removeValue(forKey: ObjectIdentifier(heartbeat)) }
    }

    /// The loops silent for longer than their tolerance, by name, with how long they have been silent.
    public func stalled() -> [(name: String, silence: Duration)] {
        let now = MonotonicClock.nanoseconds()
        return registered.withLock { Array($0.values) }
            .map { ($0.name, $0.silence(now: now), $0.tolerance) }
            .filter { $0.1 > $0.2 }
            .map { (name: $0.0, silence: $0.1) }
            .sorted { $0.name < $1.name }
    }

    /// Names of the registered loops (for logs and tests).
    public var names: [String] { registered.withLock { $0.values.map(\.name) }.sorted() }
}

/// CLOCK_MONOTONIC in nanoseconds: what heartbeats compare (the wall clock may jump).
enum MonotonicClock {
    static func nanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
