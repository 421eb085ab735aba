import Foundation
import Logging
import PQ
import Synchronization

/// The retention loop, a part of the daemon: every `retention.interval` seconds, once the database is
/// ready, it
/// 1. purges tombstones whose purge is due (a delete that fenced a transfer in flight, or whose purge the
///    bucket refused: see `PredictionDeleter`),
/// 2. deletes, as a delete on demand would (tombstones kept), the predictions with an object stored more
///    than `retention.objects` seconds ago (when set),
/// 3. prunes raw delivery bodies past `retention.delivery_bodies` (`BodyRetention`), in small batches,
///    and now and then measures the bytes of bodies still kept (`afterimage_delivery_body_bytes`,
///    `BodyBytesTally`).
///
/// Every step takes a pooled connection for one short statement or batch and gives it back, so webhooks
/// and lookups wait at most for one batch's connection; a pass ends early when the daemon stops. A pass
/// with nothing to do costs a few index probes (no row of a young delivery is read), so a small
/// `retention.interval` costs little; bodies held back are gone over again only every ten intervals.
public final class RetentionService: DaemonComponent {
    public struct Configuration: Sendable {
        public var interval: TimeInterval = 60
        /// 0 turns body pruning off.
        public var deliveryBodiesSeconds = 604_800
        /// 0 turns object retention off.
        public var objectsSeconds = 0
        /// Most batches of bodies, and predictions deleted for object retention, per pass.
        public var maxBatchesPerPass = 50
        /// Most bodies pruned per second of `interval`: a pass prunes at most `interval` times this many.
        /// Why: pruning is PostgreSQL work (each body rewritten, its row's index entries and the tally's
        /// trigger) that intake would otherwise use. At 60 s a pass may prune 12,000 bodies (a burst of one
        /// to three seconds a minute, which the retention benchmark shows intake does not feel); without a
        /// rate, `retention.interval = 1` pruned a backlog at 3,000–12,000 bodies a second and intake fell to
        /// 0.6 of its speed. 200 a second is still 17 million a day, far more than any deployment receives,
        /// so a backlog drains (after an upgrade, or a lowered `retention.delivery_bodies`) and steady state
        /// keeps up whatever the interval.
        public var maxBodiesPerSecond = 200
        public var maxObjectDeletesPerPass = 100
        /// How often the tally of kept bodies' bytes is brought up to date.
        public var measureInterval: TimeInterval = 600
        /// Most statements of the tally's catching up per pass (each `BodyBytesTally.chunkRows` bodies).
        public var maxTallyChunksPerPass = 50
        public init() {}
    }

    let pool: Pool
    let deleter: PredictionDeleter
    let configuration: Configuration
    let databaseReady: @Sendable () -> Bool
    let logger: Logger
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup
    private let lastMeasured = Mutex<Date?>(nil)

    public let name = "retention"
    /// One batch (a short statement, or one prediction's purge) is what a stop may wait for.
    public let stopBudget: Duration = .seconds(2)

    public init(
        pool: Pool, deleter: PredictionDeleter, configuration: Configuration,
        databaseReady: @escaping @Sendable () -> Bool = { true }, heartbeats: Heartbeats? = nil, logger: Logger
    ) {
        self.pool = pool
        self.deleter = deleter
        self.configuration = configuration
        self.databaseReady = databaseReady
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        threads.repeating("afterimage-retention", every: configuration.interval, until: stopSignal) { [self] heartbeat in
            while !databaseReady() {
                guard stopSignal.sleep(1, heartbeat: heartbeat) else { return }
            }
            do {
                try pass(heartbeat)
            } catch {
                logger.warning("retention pass ended early; the next one goes on", metadata: ["error": "\(error)"])
            }
        }
    }

    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// One pass of all three steps.
    func pass(_ heartbeat: Heartbeat) throws {
        let purged = try pool.withConnection { try deleter.purgeDue(on: $0) }
        if purged > 0 { logger.info("retention: due purges removed objects", metadata: ["objects": "\(purged)"]) }
        if configuration.objectsSeconds > 0 { try expireObjects(heartbeat) }
        if configuration.deliveryBodiesSeconds > 0 { try pruneBodies(heartbeat) }
        let now = Date()
        if lastMeasured.withLock({ $0.map { now.timeIntervalSince($0) >= configuration.measureInterval } ?? true }) {
            try measureBodies(heartbeat, now: now)
        }
    }

    /// Brings the tally of kept bodies up to date and sets the gauge; on a big upgraded table the catching
    /// up spreads over passes (the gauge waits for it rather than showing a part).
    func measureBodies(_ heartbeat: Heartbeat, now: Date) throws {
        let tally = BodyBytesTally()
        for _ in 0..<configuration.maxTallyChunksPerPass where !stopSignal.isStopped {
            heartbeat.beat()
            if try pool.withConnection({ try tally.advance(on: $0) }) {
                lastMeasured.withLock { $0 = now }
                AfterimageMetrics.bodyBytesKept(try pool.withConnection { try tally.total(on: $0) })
                return
            }
        }
    }

    /// Deletes the predictions whose oldest stored objects passed `retention.objects`.
    func expireObjects(_ heartbeat: Heartbeat) throws {
        let due = try pool.withConnection { connection in
            try connection.query(
                """
                SELECT DISTINCT provider, prediction_id FROM (
                    SELECT provider, prediction_id FROM assets
                    WHERE state = 'stored' AND stored_at < now() - make_interval(secs => $1)
                    ORDER BY stored_at LIMIT $2) oldest
                """, [configuration.objectsSeconds, configuration.maxObjectDeletesPerPass]
            )
            .map { (try $0.decode(0, as: ProviderName.self), try $0.decode(1, as: String.self)) }
        }
        var objects = 0
        for (provider, id) in due where !stopSignal.isStopped {
            heartbeat.beat()
            if let outcome = try pool.withConnection({ try deleter.delete(provider: provider, id: id, on: $0) }) {
                objects += outcome.objectsRemoved
            }
        }
        if !due.isEmpty {
            logger.info(
                "retention: predictions past retention.objects deleted (tombstones kept)",
                metadata: ["predictions": "\(due.count)", "objects": "\(objects)"])
        }
    }

    /// Bodies one pass may prune: `maxBodiesPerSecond` for each second of `interval`, at least one.
    var bodiesPerPass: Int {
        max(1, Int((Double(configuration.maxBodiesPerSecond) * configuration.interval).rounded(.down)))
    }

    /// Returns how many bodies were pruned.
    @discardableResult
    func pruneBodies(_ heartbeat: Heartbeat) throws -> Int {
        var retention = BodyRetention(keepSeconds: configuration.deliveryBodiesSeconds)
        // Bodies passed over (assets not settled yet) are looked at again every ten passes.
        retention.rescanInterval = 10 * configuration.interval
        let fullBatch = retention.batchRows
        let budget = bodiesPerPass
        var pruned = 0
        var bytes: Int64 = 0
        for _ in 0..<configuration.maxBatchesPerPass where !stopSignal.isStopped && pruned < budget {
            heartbeat.beat()
            // The last batch of a pass is cut to what is left of the budget (a batch prunes at most what it reads).
            retention.batchRows = min(fullBatch, budget - pruned)
            let batch = try pool.withConnection { try retention.runBatch(on: $0) }
            pruned += batch.pruned
            bytes += batch.bytes
            AfterimageMetrics.bodiesPruned(batch.pruned, bytes: batch.bytes)
            if batch.caughtUp { break }
        }
        if pruned > 0 {
            logger.info("retention: raw delivery bodies replaced by their SHA-256", metadata: ["bodies": "\(pruned)", "bytes": "\(bytes)"])
        }
        return pruned
    }
}
