import Foundation
import Logging
import PQ
import Synchronization

/// How much work waits: assets per state and the earliest deadline among those not yet stored.
struct QueueStats: Sendable, Equatable {
    static let states = AssetState.allCases.map(\.rawValue)
    var counts: [String: Int]
    var oldestDeadline: Date?

    /// One index-only scan per state (`assets_state_id_idx`) plus the claim index for the deadline.
    static func query(on connection: Connection) throws -> QueueStats {
        var counts: [String: Int] = [:]
        for row in try connection.query("SELECT state, count(*)::bigint FROM assets GROUP BY state") {
            counts[try row.decode(0, as: String.self)] = Int(try row.decode(1, as: Int64.self))
        }
        let oldest = try connection.query(
            "SELECT min(deadline) FROM assets WHERE state IN ('pending', 'in_flight')"
        ).first
        return QueueStats(counts: counts, oldestDeadline: try oldest?.decode(0, as: Date?.self))
    }

    /// What `systemctl status` shows: `3 pending, 1 in flight; earliest deadline 2026-11-21T10:52:00Z`.
    var statusLine: String {
        var line = "\(counts["pending"] ?? 0) pending, \(counts["in_flight"] ?? 0) in flight"
        if let oldestDeadline {
            line += "; earliest deadline \(oldestDeadline.rfc3339())"
        }
        return line
    }
}

/// Keeps the queue gauges and systemd's `STATUS=` line fresh: a query every `interval`, and on demand
/// (a `/metrics` scrape) at most once a second, so scrapers cannot turn into a load on the database.
/// While the database is not ready yet (the pool does not admit) it does not ask.
final class QueueMonitor: DaemonComponent {
    let pool: Pool
    let status: ServiceStatus
    let interval: TimeInterval
    let logger: Logger
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup
    private let last = Mutex<(at: ContinuousClock.Instant, stats: QueueStats?)?>(nil)

    let name = "queue monitor"
    /// A query in progress is not waited for past this (it ends at statement_timeout on its own).
    let stopBudget: Duration = .seconds(2)

    init(pool: Pool, status: ServiceStatus, interval: TimeInterval = 10, heartbeats: Heartbeats? = nil, logger: Logger) {
        self.pool = pool
        self.status = status
        self.interval = interval
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    func start() {
        threads.repeating("afterimage-monitor", every: interval, until: stopSignal) { [self] _ in refresh(force: true) }
    }

    func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// Queries unless the last query is under a second old; returns the stats in effect (nil when the
    /// database did not answer, or is not ready yet: then `STATUS=` already says what is awaited).
    @discardableResult
    func refresh(force: Bool = false) -> QueueStats? {
        guard pool.isAdmitting else { return nil }
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
            status.set(.queue, stats.statusLine)
        } else {
            status.set(.queue, "queue unknown: database unavailable")
        }
        return stats
    }

    var lastStats: QueueStats? { last.withLock { $0?.stats } }
}
