import Foundation
import Logging
import PQ
import Synchronization

/// How much work waits: assets per state and the earliest deadline among those not yet stored.
struct QueueStats: Sendable, Equatable {
    static let states = ["pending", "in_flight", "stored", "failed", "expired"]
    var counts: [String: Int]
    var oldestDeadline: Date?

    /// One index-only scan per state (`assets_state_id_idx`) plus the claim index for the deadline.
    static func query(on connection: Connection) throws -> QueueStats {
        var counts: [String: Int] = [:]
        for row in try connection.query("SELECT state, count(*)::bigint FROM assets GROUP BY state") {
            counts[try row.decode(0, as: String.self)] = Int(try row.decode(1, as: Int64.self))
        }
        let oldest = try connection.query(
            "SELECT min(deadline) FROM assets WHERE state IN ('pending', 'in_flight')").first
        return QueueStats(counts: counts, oldestDeadline: try oldest?.decode(0, as: Date?.self))
    }

    /// What `systemctl status` shows: `3 pending, 1 in flight; earliest deadline 2026-11-21T10:52:00Z`.
    var statusLine: String {
        var line = "\(counts["pending"] ?? 0) pending, \(counts["in_flight"] ?? 0) in flight"
        if let oldestDeadline {
            line += "; earliest deadline \(ISO8601DateFormatter().string(from: oldestDeadline))"
        }
        return line
    }
}

/// Keeps the queue gauges and systemd's `STATUS=` line fresh: a query every `interval`, and on demand
/// (a `/metrics` scrape) at most once a second, so scrapers cannot turn into a load on the database.
final class QueueMonitor: Sendable {
    let pool: Pool
    let notifier: SystemdNotifier
    let interval: TimeInterval
    let logger: Logger
    private let running = Atomic<Bool>(false)
    private let wake = WakeSignal()
    private let finished = DispatchGroup()
    private let last = Mutex<(at: ContinuousClock.Instant, stats: QueueStats?)?>(nil)

    init(pool: Pool, notifier: SystemdNotifier, interval: TimeInterval = 10, logger: Logger) {
        self.pool = pool
        self.notifier = notifier
        self.interval = interval
        self.logger = logger
    }

    func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.enter()
        let thread = Thread { [self] in
            defer { finished.leave() }
            while running.load(ordering: .acquiring) {
                refresh(force: true)
                wake.sleep(timeout: interval, unlessStopped: { !self.running.load(ordering: .acquiring) })
            }
        }
        thread.name = "afterimage-monitor"
        thread.start()
    }

    func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        finished.wait()
    }

    /// Queries unless the last query is under a second old; returns the stats in effect (nil when the
    /// database did not answer).
    @discardableResult
    func refresh(force: Bool = false) -> QueueStats? {
        let now = ContinuousClock.now
        if !force, let previous = last.withLock({ $0 }), now - previous.at < .seconds(1) { return previous.stats }
        let stats: QueueStats?
        do {
            stats = try pool.withConnection { try QueueStats.query(on: $0) }
        } catch {
            logger.debug("queue statistics unavailable", metadata: ["error": "\(error)"])
            stats = nil
        }
        last.withLock { $0 = (now, stats) }
        if let stats {
            AfterimageMetrics.queue(stats)
            notifier.notify(SystemdNotifier.status(stats.statusLine))
        } else {
            notifier.notify(SystemdNotifier.status("database unavailable"))
        }
        return stats
    }

    var lastStats: QueueStats? { last.withLock { $0?.stats } }
}
