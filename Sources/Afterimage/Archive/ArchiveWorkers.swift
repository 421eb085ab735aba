import Curl
import Foundation
import Logging
import PQ
import Synchronization

/// The worker threads, the LISTEN thread that wakes them and the lease keeper that proves they are alive.
/// They start claiming once the database is ready (schema current); until then they wait, beating.
///
/// Threads, not tasks: every step (libpq, libcurl, file I/O) blocks, and blocking the cooperative pool
/// would starve the rest of the process.
public final class ArchiveWorkers: DaemonComponent {
    public struct Configuration: Sendable {
        public var count: Int
        /// Fallback when a notification is missed (LISTEN connection down): idle workers look this often.
        public var pollInterval: TimeInterval = 2
        /// On stop, how long running transfers may go on (`workers.drain_timeout`).
        public var drainTimeout: Duration = .seconds(30)
        /// After the drain, how long aborted transfers get to stop (libcurl notices within about a second;
        /// a multipart upload is aborted with one request) and their leases to be released.
        public var abortTimeout: Duration = .seconds(10)
        public init(count: Int) { self.count = count }
    }

    let archiver: Archiver
    let queue: ArchiveQueue
    let pool: Pool
    let databaseURL: String
    let limits: SessionLimits
    let configuration: Configuration
    let databaseReady: @Sendable () -> Bool
    let logger: Logger

    /// Set by `stop()`: workers claim nothing more and idle threads end.
    private let stopSignal = StopSignal()
    /// Paces the lease keeper, which outlives the stop while transfers still run.
    private let leaseTimer = WakeSignal()
    /// Set once the drain timeout has passed: transfers still running are abandoned and their leases released.
    private let aborting = Atomic<Bool>(false)
    private let inFlight = Mutex<[Int64: InFlight]>([:])
    /// Set while claims fail (the database went away): the first failure is a warning, the rest debug.
    private let claimsFailing = Atomic<Bool>(false)
    private let threads: ThreadGroup

    struct InFlight {
        let token: UUID
        var lost: Bool
    }

    public let name = "archive workers"
    public var stopBudget: Duration { configuration.drainTimeout + configuration.abortTimeout }

    public init(
        archiver: Archiver, databaseURL: String, limits: SessionLimits = SessionLimits(), configuration: Configuration,
        databaseReady: @escaping @Sendable () -> Bool = { true }, heartbeats: Heartbeats? = nil, logger: Logger
    ) {
        self.archiver = archiver
        self.queue = archiver.queue
        self.pool = archiver.pool
        self.databaseURL = databaseURL
        self.limits = limits
        self.configuration = configuration
        self.databaseReady = databaseReady
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        guard configuration.count > 0 else { return }
        threads.spawn("afterimage-listen") { [self] heartbeat in
            if wait(until: databaseReady, heartbeat: heartbeat) { listenLoop(heartbeat) }
        }
        threads.spawn("afterimage-lease") { [self] heartbeat in
            if wait(until: databaseReady, heartbeat: heartbeat) { leaseLoop(heartbeat) }
        }
        // Stale spool files are the `SpoolSweeper`'s; the files a worker writes are claimed (`SpoolClaims`)
        // until their row is recorded, so a sweep at any moment leaves them alone.
        for index in 0..<configuration.count {
            threads.spawn("afterimage-worker-\(index)") { [self] heartbeat in
                if wait(until: databaseReady, heartbeat: heartbeat) { workerLoop(heartbeat) }
            }
        }
        logger.info("workers started", metadata: ["count": "\(configuration.count)"])
    }

    /// Stops claiming, gives running transfers the drain timeout to finish, then aborts them (uploads and
    /// downloads stop within about a second, a multipart upload is aborted) and releases their leases so
    /// another instance takes them at once. Returns when every thread has ended, or after the abort
    /// timeout: a transfer that still has not ended then keeps its lease until it expires.
    public func stop() {
        stopSignal.stop()
        leaseTimer.broadcast()
        if !threads.join(timeout: configuration.drainTimeout) {
            logger.warning("drain timeout reached; releasing the remaining transfers", metadata: ["in_flight": "\(inFlight.withLock { $0.count })"])
            aborting.store(true, ordering: .releasing)
            if !threads.join(timeout: configuration.abortTimeout) {
                logger.error(
                    "transfers did not end after the abort; their leases expire on their own",
                    metadata: ["in_flight": "\(inFlight.withLock { $0.count })"])
                return
            }
        }
        logger.info("workers stopped")
    }

    /// Wakes idle workers now (new assets were queued by this process).
    public func notifyNewWork() { stopSignal.wake() }

    /// Waits until `condition` holds (the database is ready); false when stopped first.
    private func wait(until condition: () -> Bool, heartbeat: Heartbeat) -> Bool {
        while !condition() {
            guard stopSignal.waitForWork(0.5, heartbeat: heartbeat) else { return false }
        }
        return !stopSignal.isStopped
    }

    private func workerLoop(_ heartbeat: Heartbeat) {
        let session = CurlSession()
        while !stopSignal.isStopped {
            heartbeat.beat()
            let job: ArchiveJob?
            do {
                job = try pool.withConnection { try queue.claim(on: $0) }
                if claimsFailing.exchange(false, ordering: .relaxed) { logger.notice("claims work again") }
            } catch {
                if claimsFailing.exchange(true, ordering: .relaxed) {
                    logger.debug("claim failed", metadata: ["error": "\(error)"])
                } else {
                    logger.warning("claim failed; workers retry every poll interval", metadata: ["error": "\(error)"])
                }
                stopSignal.waitForWork(configuration.pollInterval, heartbeat: heartbeat)
                continue
            }
            guard let job else {
                stopSignal.waitForWork(configuration.pollInterval, heartbeat: heartbeat)
                continue
            }
            inFlight.withLock { $0[job.assetID] = InFlight(token: job.claimToken, lost: false) }
            let id = job.assetID
            // Polled by libcurl about once a second during every download and upload: the transfer's
            // heartbeat, and its way to learn it must stop.
            archiver.process(job, session: session) { [self] in
                heartbeat.beat()
                return aborting.load(ordering: .acquiring) || inFlight.withLock { $0[id]?.lost ?? false }
            }
            inFlight.withLock { _ = $0.removeValue(forKey: id) }
        }
    }

    /// Renews the leases of running jobs every third of a lease, and returns expired leases (of crashed
    /// daemons) to the queue so their work is picked up within one lease period.
    private func leaseLoop(_ heartbeat: Heartbeat) {
        let interval = max(0.2, Double(queue.leaseSeconds) / 3)
        while !stopSignal.isStopped || !inFlight.withLock({ $0.isEmpty }) {
            heartbeat.beat()
            let jobs = inFlight.withLock { $0.map { ($0.key, $0.value.token) } }
            do {
                let lost = try pool.withConnection { connection -> Set<Int64> in
                    let lost = try queue.renew(jobs, on: connection)
                    if try queue.reclaimExpiredLeases(on: connection) > 0 { stopSignal.wake() }
                    return lost
                }
                if !lost.isEmpty {
                    logger.warning("leases lost; abandoning those transfers", metadata: ["assets": "\(lost.sorted())"])
                    inFlight.withLock { for id in lost { $0[id]?.lost = true } }
                }
            } catch {
                logger.warning("lease renewal failed", metadata: ["error": "\(error)"])
            }
            leaseTimer.sleep(
                timeout: interval, heartbeat: heartbeat,
                unlessStopped: { self.stopSignal.isStopped && self.inFlight.withLock { $0.isEmpty } })
        }
    }

    /// Wakes idle workers on every notification, and once listening again (anything queued meanwhile).
    private func listenLoop(_ heartbeat: Heartbeat) {
        ChannelListener(databaseURL: databaseURL, channel: AssetNotifications.channel, limits: limits, heartbeat: heartbeat).run(
            while: { !stopSignal.isStopped },
            connected: { stopSignal.wake() },
            received: { _ in stopSignal.wake() },
            failed: { error in logger.debug("LISTEN connection failed; polling until it is back", metadata: ["error": "\(error)"]) },
            pause: { stopSignal.sleep(1, heartbeat: heartbeat) })
    }
}
