import Foundation
import Logging
import PQ

/// One reconciliation pass: pages through Replicate's prediction list (newest first, back to
/// `createdAfter`) and records every prediction Afterimage does not already hold in a terminal state,
/// through the same intake code a webhook takes, so outputs whose webhook was lost are queued before
/// they expire. Then refreshes, one by one, predictions stuck non-terminal here for too long.
///
/// A pass holds a session advisory lock on its own connection: when several daemons share a database
/// only one pass runs at a time and the others skip. Its writes use that connection too, never the
/// pool, so a slow or failing pass cannot take connections from webhook intake.
public struct ReplicateReconciler: Sendable {
    /// Fixed across all Afterimage processes, distinct from `Migrator.advisoryLockKey` ("AftRecon").
    public static let advisoryLockKey: Int64 = 0x4166_7452_6563_6F6E

    public struct Configuration: Sendable {
        public var databaseURL: String
        /// Predictions not terminal here and untouched for this long are fetched one by one.
        public var staleAfter: TimeInterval = 900
        /// Bounds a pass: at most this many list pages, and this many one-by-one refreshes.
        public var maxPages = 1000
        public var maxRefreshes = 100
        /// Also record predictions created on the website (`replicate.reconcile_web`): Replicate keeps
        /// those indefinitely, so by default they are left alone.
        public var reconcileWeb = false
        /// Deadlines of the pass's database session (`database.*` timeouts).
        public var sessionLimits = SessionLimits()

        public init(databaseURL: String) { self.databaseURL = databaseURL }
    }

    /// What a pass saw and did. `recorded` counts predictions written; `assets` the output files those
    /// recorded terminal predictions carry (now queued, or already there).
    public struct Summary: Sendable, Equatable {
        public var pages = 0
        public var seen = 0
        /// Already terminal here: skipped without a write.
        public var alreadyTerminal = 0
        /// Created before the window; the list is newest first, so these end the pass.
        public var older = 0
        public var recorded = 0
        /// Recorded by an earlier pass (or another daemon) with the same status.
        public var duplicates = 0
        public var unparseable = 0
        /// Created on the website and skipped (`replicate.reconcile_web` is off).
        public var web = 0
        /// Kept raw because the database refused a value in them; the pass went on with the next one.
        public var rejected = 0
        public var assets = 0
        public var refreshed = 0
        public var refreshNotFound = 0
        /// Ids of the recorded predictions, in the order recorded (what `afterimage reconcile` lists).
        public var recordedIDs: [String] = []
        public init() {}
    }

    public enum Outcome: Sendable, Equatable {
        case completed(Summary)
        /// Another instance holds the lock; this pass did nothing.
        case lockHeld
    }

    let api: ReplicateAPIClient
    let intake: ReplicateIntake
    let configuration: Configuration
    let logger: Logger

    public init(api: ReplicateAPIClient, intake: ReplicateIntake, configuration: Configuration, logger: Logger) {
        self.api = api
        self.intake = intake
        self.configuration = configuration
        self.logger = logger
    }

    /// The deduplication key of a reconciled delivery: the same prediction seen in the same status by any
    /// pass of any daemon is one delivery. A later status is a new key, and the prediction upsert is
    /// monotonic, so a webhook arriving before, during or after a pass never doubles anything.
    public static func deliveryID(predictionID: String, status: String?) -> String {
        let status = status.flatMap { ReplicatePrediction.statuses.contains($0) ? $0 : nil } ?? "unknown"
        return "reconcile:\(predictionID):\(status)"
    }

    /// Runs one pass; `progress` is called after each page and each refresh batch.
    public func runPass(createdAfter: Date, progress: (Summary) -> Void = { _ in }) throws(ReconcileError) -> Outcome {
        let connection: Connection
        do {
            connection = try Connection.connect(url: configuration.databaseURL, limits: configuration.sessionLimits)
        } catch {
            throw ReconcileError(.database, "cannot connect: \(error)")
        }
        defer { connection.close() }  // ends the session, and with it the advisory lock
        do {
            guard try connection.query("SELECT pg_try_advisory_lock($1)", [Self.advisoryLockKey]).first?.decode(0, as: Bool.self) == true else {
                return .lockHeld
            }
        } catch {
            throw ReconcileError(.database, "cannot take the reconcile lock: \(error)")
        }
        var summary = Summary()
        var seen: Set<String> = []
        var next: String? = api.firstPageURL(createdAfter: createdAfter)
        while let url = next, summary.pages < configuration.maxPages {
            let page = try api.listPage(url)
            summary.pages += 1
            let reachedOlder = try process(page.items, createdAfter: createdAfter, seen: &seen, summary: &summary, on: connection)
            progress(summary)
            next = reachedOlder ? nil : page.next
        }
        if next != nil {
            logger.warning(
                "reconcile: page limit reached before the end of the window; older predictions wait for the next pass",
                metadata: ["pages": "\(summary.pages)"])
        }
        try refreshStale(excluding: seen, summary: &summary, on: connection)
        progress(summary)
        return .completed(summary)
    }

    /// Records the page's predictions that are not terminal here. Returns true when the page reached
    /// predictions older than the window (the list is newest first: no later page can be newer).
    func process(
        _ items: [ReplicateAPIClient.Item], createdAfter: Date, createdBefore: Date? = nil, includeWeb: Bool? = nil,
        seen: inout Set<String>, summary: inout Summary, on connection: Connection
    ) throws(ReconcileError) -> Bool {
        var reachedOlder = false
        var candidates: [(String, ReplicateAPIClient.Item)] = []
        for item in items {
            summary.seen += 1
            if let created = item.createdAt, created < createdAfter {
                summary.older += 1
                reachedOlder = true
                continue
            }
            if let createdBefore, let created = item.createdAt, created >= createdBefore { continue }
            guard let id = item.id, PredictionID.isSafe(id) else {
                summary.unparseable += 1
                logger.warning("reconcile: a listed prediction has no usable id; skipped")
                continue
            }
            seen.insert(id)
            if item.source == "web", !(includeWeb ?? configuration.reconcileWeb) {
                summary.web += 1
                continue
            }
            candidates.append((id, item))
        }
        let terminal = try terminalHere(candidates.map(\.0), on: connection)
        for (id, item) in candidates {
            if terminal.contains(id) {
                summary.alreadyTerminal += 1
                continue
            }
            try record(id: id, item: item, summary: &summary, on: connection)
        }
        return reachedOlder
    }

    /// Which of `ids` are already terminal here: one query per page, before any write.
    private func terminalHere(_ ids: [String], on connection: Connection) throws(ReconcileError) -> Set<String> {
        guard !ids.isEmpty else { return [] }
        // A JSON array parameter: PQ binds scalars only, and ids could in principle hold a comma.
        let list = String(decoding: (try? JSONSerialization.data(withJSONObject: ids)) ?? Data("[]".utf8), as: UTF8.self)
        do {
            let rows = try connection.query(
                """
                SELECT id FROM predictions
                WHERE provider = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb))
                  AND status IN ('succeeded', 'failed', 'canceled', 'aborted')
                """, [ProviderName.replicate, list])
            var found: Set<String> = []
            for row in rows { found.insert(try row.decode(0, as: String.self)) }
            return found
        } catch {
            throw ReconcileError(.database, "cannot read prediction states: \(error)")
        }
    }

    private func record(id: String, item: ReplicateAPIClient.Item, summary: inout Summary, on connection: Connection) throws(ReconcileError) {
        let raw = WebhookDelivery(
            provider: .replicate, deliveryID: Self.deliveryID(predictionID: id, status: item.status),
            timestamp: nil, body: item.body, source: .reconcile)
        // data: outputs are decoded into the spool as a webhook's are; without a spool (or when it is full)
        // the workers decode them from the recorded delivery instead.
        let delivery: WebhookDelivery
        do {
            delivery = try intake.spoolingDataOutputs(of: raw)
        } catch {
            logger.warning(
                "reconcile: cannot decode data: outputs into the spool; the workers will", metadata: ["prediction": "\(id)", "error": "\(error)"])
            delivery = raw
        }
        let outcome: IntakeOutcome
        do {
            outcome = try intake.record(delivery, on: connection)
        } catch let error as PQError where Self.isContentError(error) {
            // Something in this prediction the database cannot hold: keep it raw, say so, and go on with the
            // next one. Ending the pass here would end every later pass here too.
            intake.removeSpoolFiles(of: delivery)
            do {
                _ = try intake.recordRejected(delivery, reason: "the database refused a value in it (\(error.message))", on: connection)
            } catch {
                logger.error(
                    "reconcile: a listed prediction could not be kept even raw; skipped",
                    metadata: ["prediction": "\(id)", "error": "\(error)"])
            }
            summary.rejected += 1
            logger.warning(
                "reconcile: listed prediction kept raw, the database refused a value in it; going on",
                metadata: ["prediction": "\(id)", "error": "\(error)"])
            return
        } catch {
            intake.removeSpoolFiles(of: delivery)
            throw ReconcileError(.database, "cannot record prediction \(id): \(error)")
        }
        switch outcome {
        case .accepted(_, let assets):
            summary.recorded += 1
            summary.assets += assets
            summary.recordedIDs.append(id)
            logger.info(
                "reconcile: recorded a prediction whose webhook never came",
                metadata: ["prediction": "\(id)", "status": "\(item.status ?? "?")", "assets": "\(assets)"])
        case .duplicate:
            summary.duplicates += 1
        case .unparseable(let message):
            summary.unparseable += 1
            logger.warning("reconcile: listed prediction kept but not understood", metadata: ["prediction": "\(id)", "reason": "\(message)"])
        }
    }

    /// A failure that is about one prediction's content, not about the database: a value it refused
    /// (SQLSTATE class 22, data exception) or one that cannot even be sent (a NUL in text).
    static func isContentError(_ error: PQError) -> Bool {
        error.code == .invalidParameter || error.isDataException
    }

    /// Read through the partial index `predictions_unfinished_idx`: its cost follows the predictions in
    /// progress, not the table (a sequential scan of every prediction without it).
    static let staleSQL = """
        SELECT id FROM predictions
        WHERE provider = $1 AND status IN ('starting', 'processing')
          AND updated_at < now() - make_interval(secs => $2)
          AND id NOT IN (SELECT jsonb_array_elements_text($3::jsonb))
        ORDER BY random() LIMIT $4
        """

    /// Predictions non-terminal here, unchanged for `staleAfter` and not in this pass's list (older than
    /// the window, say, or long-running): fetched one by one. Random order, so a few that never finish
    /// cannot starve the others when there are more than `maxRefreshes`.
    private func refreshStale(excluding seen: Set<String>, summary: inout Summary, on connection: Connection) throws(ReconcileError) {
        let excluded = String(decoding: (try? JSONSerialization.data(withJSONObject: Array(seen))) ?? Data("[]".utf8), as: UTF8.self)
        var stale: [String] = []
        do {
            for row in try connection.query(
                Self.staleSQL, [ProviderName.replicate, configuration.staleAfter, excluded, configuration.maxRefreshes])
            {
                stale.append(try row.decode(0, as: String.self))
            }
        } catch {
            throw ReconcileError(.database, "cannot list stale predictions: \(error)")
        }
        for id in stale {
            guard let item = try api.prediction(id: id) else {
                summary.refreshNotFound += 1
                logger.debug("reconcile: a stale prediction is unknown to the API", metadata: ["prediction": "\(id)"])
                continue
            }
            summary.refreshed += 1
            // The API's own id wins over ours only if it is the same prediction.
            guard item.id == nil || item.id == id else { continue }
            try record(id: id, item: item, summary: &summary, on: connection)
        }
    }
}
