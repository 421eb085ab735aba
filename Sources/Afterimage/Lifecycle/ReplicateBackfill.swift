import Foundation
import Logging
import PQ

/// `afterimage backfill`: archives an account's existing history. Pages through Replicate's prediction list
/// over the whole range asked for (not only reconciliation's window), records every prediction exactly as
/// reconciliation does (same intake, same delivery ids, so webhooks, passes and repeated backfills never
/// double anything) and so queues its outputs; the workers find out which still exist (a 404 after the
/// deadline makes the asset `expired` with its reason).
///
/// Each run is a row of `backfill_runs` holding the page to continue from, updated after every page, so
/// `--resume` continues an interrupted run where it stopped. A session advisory lock keeps two backfills of
/// one database from running at once.
public struct ReplicateBackfill: Sendable {
    /// "AftBackf": distinct from the migration and reconcile locks.
    public static let advisoryLockKey: Int64 = 0x4166_7442_6163_6B66

    let reconciler: ReplicateReconciler
    let logger: Logger

    public init(reconciler: ReplicateReconciler, logger: Logger) {
        self.reconciler = reconciler
        self.logger = logger
    }

    public enum Start: Sendable {
        /// A new run over `[since, until)` (until nil: now).
        case fresh(since: Date, until: Date?, includeWeb: Bool)
        /// The latest unfinished run, from the page after the last one recorded.
        case resume
    }

    public struct Progress: Sendable {
        public var runID: Int64
        public var since: Date
        public var until: Date?
        public var resumed: Bool
        /// Totals over the whole run (earlier sessions of a resumed run included).
        public var pages = 0
        public var seen = 0
        public var recorded = 0
        /// This session only (rates).
        public var sessionSeen = 0
        public var summary = ReplicateReconciler.Summary()
        /// Creation time of the oldest prediction seen so far: how far back the walk has come.
        public var reached: Date?
        public var finished = false
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public func run(_ start: Start, progress report: (Progress) -> Void = { _ in }) throws -> Progress {
        let configuration = reconciler.configuration
        let connection = try Connection.connect(url: configuration.databaseURL, limits: configuration.sessionLimits)
        defer { connection.close() }
        guard try connection.query("SELECT pg_try_advisory_lock($1)", [Self.advisoryLockKey]).first?.decode(0, as: Bool.self) == true else {
            throw Failure(description: "another backfill of this database is running")
        }
        var progress: Progress
        var next: String?
        var includeWeb: Bool
        switch start {
        case .fresh(let since, let until, let web):
            var url = reconciler.api.firstPageURL(createdAfter: since)
            if let until {
                url +=
                    "&created_before=" + (until.rfc3339().addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", ":", "."])) ?? "")
            }
            guard
                let id = try connection.query(
                    """
                    INSERT INTO backfill_runs (provider, since, until, include_web, next_url) VALUES ($1, $2, $3, $4, $5) RETURNING id
                    """, [ProviderName.replicate, since, until, web, url]
                ).first?.decode(0, as: Int64.self)
            else {
                throw Failure(description: "could not record the run")
            }
            progress = Progress(runID: id, since: since, until: until, resumed: false)
            next = url
            includeWeb = web
        case .resume:
            guard
                let row = try connection.query(
                    """
                    SELECT id, since, until, include_web, next_url, pages, seen, recorded FROM backfill_runs
                    WHERE provider = $1 AND finished_at IS NULL ORDER BY id DESC LIMIT 1
                    """, [ProviderName.replicate]
                ).first
            else {
                throw Failure(description: "no unfinished backfill to resume; start one with --since")
            }
            progress = Progress(runID: try row.decode(0), since: try row.decode(1), until: try row.decode(2), resumed: true)
            includeWeb = try row.decode(3)
            next = try row.decode(4)
            progress.pages = try row.decode(5)
            progress.seen = try row.decode(6)
            progress.recorded = try row.decode(7)
        }
        var seen: Set<String> = []
        while let url = next {
            let page = try reconciler.api.listPage(url)
            var summary = progress.summary
            let before = summary
            let reachedOlder = try reconciler.process(
                page.items, createdAfter: progress.since, createdBefore: progress.until,
                includeWeb: includeWeb, seen: &seen, summary: &summary, on: connection)
            summary.pages += 1
            progress.summary = summary
            progress.pages += 1
            progress.seen += summary.seen - before.seen
            progress.sessionSeen += summary.seen - before.seen
            progress.recorded += summary.recorded - before.recorded
            if let oldest = page.items.compactMap(\.createdAt).min() {
                progress.reached = min(progress.reached ?? oldest, oldest)
            }
            next = reachedOlder ? nil : page.next
            // The page is recorded before the position moves past it: a crash repeats at most one page,
            // which deduplicates.
            try connection.execute(
                """
                UPDATE backfill_runs SET next_url = $2, pages = $3, seen = $4, recorded = $5, updated_at = now(),
                                         finished_at = CASE WHEN $2::text IS NULL THEN now() END
                WHERE id = $1
                """, [progress.runID, next, progress.pages, progress.seen, progress.recorded])
            progress.finished = next == nil
            report(progress)
        }
        progress.finished = true
        return progress
    }
}
