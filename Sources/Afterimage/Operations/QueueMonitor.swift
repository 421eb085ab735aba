import Foundation
import Logging
import PQ
import Synchronization

/// How much work waits: assets per state and the earliest deadline among those not yet stored.
struct QueueStats: Sendable, Equatable {
    static let states = AssetState.allCases.map(\.rawValue)
    /// Counted on every refresh: an index range scan of `assets_state_id_idx` each. These states hold the
    /// work in progress and the few that went wrong; their rows are a small part of the table.
    static let recountedStates = AssetState.allCases.filter { $0 != .stored }.map(\.rawValue)
    var counts: [String: Int]
    var oldestDeadline: Date?

    /// A full count of the stored assets and the database's clock when it was taken. Stored assets are nearly
    /// every row of a table that only grows: counting them reads an index entry per asset (10 s of CPU at
    /// 17 million assets, measured), so between full counts the figure is this count plus the assets stored
    /// since (`assets_stored_idx`, a range of recent `stored_at`). Assets that leave `stored` (deleted) are
    /// seen at the next full count.
    struct StoredTally: Sendable, Equatable {
        var count: Int
        var asOf: Date
    }

    /// The statistics, with a full count of stored assets when `tally` is nil (returned for next time).
    static func query(on connection: Connection, stored tally: StoredTally?) throws -> (stats: QueueStats, tally: StoredTally) {
        var counts: [String: Int] = [:]
        for row in try connection.query(
            "SELECT state, count(*)::bigint FROM assets WHERE state = ANY($1::text[]) GROUP BY state",
            [try PQArray<String>(recountedStates.map { Optional($0) })])
        {
            counts[try row.decode(0, as: String.self)] = Int(try row.decode(1, as: Int64.self))
        }
        let current: StoredTally
        if let tally {
            let since =
                try connection.query(
                    "SELECT count(*)::bigint FROM assets WHERE state = 'stored' AND stored_at > $1", [tally.asOf]
                ).first?.decode(0, as: Int64.self) ?? 0
            current = tally
            counts[AssetState.stored.rawValue] = tally.count + Int(since)
        } else {
            let row = try connection.query("SELECT count(*)::bigint, now() FROM assets WHERE state = 'stored'").first
            current = StoredTally(
                count: Int(try row?.decode(0, as: Int64.self) ?? 0), asOf: try row?.decode(1, as: Date.self) ?? Date())
            counts[AssetState.stored.rawValue] = current.count
        }
        let oldest = try connection.query(
            "SELECT min(deadline) FROM assets WHERE state IN ('pending', 'in_flight')"
        ).first
        return (QueueStats(counts: counts, oldestDeadline: try oldest?.decode(0, as: Date?.self)), current)
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
    /// The last full count of stored assets and when to count again: after 100 times as long as that count
    /// took and at least `storedRecountInterval`, so the full counts cost at most about 1 % of the time
    /// whatever the table's size.
    private let storedTally = Mutex<(tally: QueueStats.StoredTally, recountAfter: ContinuousClock.Instant)?>(nil)
    let storedRecountInterval: Duration = .seconds(600)

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
        let tally = storedTally.withLock { kept in kept.flatMap { now < $0.recountAfter ? $0.tally : nil } }
        do {
            let started = ContinuousClock.now
            let answer = try pool.withConnection { try QueueStats.query(on: $0, stored: tally) }
            if tally == nil {
                let took = ContinuousClock.now - started
                storedTally.withLock { $0 = (answer.tally, ContinuousClock.now + max(storedRecountInterval, took * 100)) }
            }
            stats = answer.stats
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
