import Curl
import Foundation
import Logging
import PQ
import Synchronization

/// The worker threads, the LISTEN thread that wakes them and the lease keeper that proves they are alive.
///
/// Threads, not tasks: every step (libpq, libcurl, file I/O) blocks, and blocking the cooperative pool
/// would starve the rest of the process.
public final class ArchiveWorkers: Sendable {
    public struct Configuration: Sendable {
        public var count: Int
        /// Fallback when a notification is missed (LISTEN connection down): idle workers look this often.
        public var pollInterval: TimeInterval = 2
        public init(count: Int) { self.count = count }
    }

    let archiver: Archiver
    let queue: ArchiveQueue
    let pool: Pool
    let databaseURL: String
    let configuration: Configuration
    let logger: Logger

    private let running = Atomic<Bool>(false)
    /// Set once the drain timeout has passed: transfers still running are abandoned and their leases released.
    private let aborting = Atomic<Bool>(false)
    private let wake = WakeSignal()
    private let inFlight = Mutex<[Int64: InFlight]>([:])
    private let threads = DispatchGroup()

    struct InFlight { let token: UUID; var lost: Bool }

    public init(archiver: Archiver, databaseURL: String, configuration: Configuration, logger: Logger) {
        self.archiver = archiver
        self.queue = archiver.queue
        self.pool = archiver.pool
        self.databaseURL = databaseURL
        self.configuration = configuration
        self.logger = logger
    }

    public func start() {
        guard configuration.count > 0, !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        cleanSpool()
        startCountedThread("afterimage-listen", in: threads) { self.listenLoop() }
        startCountedThread("afterimage-lease", in: threads) { self.leaseLoop() }
        for index in 0..<configuration.count {
            startCountedThread("afterimage-worker-\(index)", in: threads) { self.workerLoop() }
        }
        logger.info("workers started", metadata: ["count": "\(configuration.count)"])
    }

    /// Stops claiming, gives running transfers `drainTimeout` to finish, then aborts them and releases their
    /// leases so another instance takes them at once. Returns when every thread has ended.
    public func stop(drainTimeout: Duration) {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        let seconds = Double(drainTimeout.components.seconds) + Double(drainTimeout.components.attoseconds) / 1e18
        if threads.wait(timeout: .now() + seconds) == .timedOut {
            logger.warning("drain timeout reached; releasing the remaining transfers", metadata: ["in_flight": "\(inFlight.withLock { $0.count })"])
            aborting.store(true, ordering: .releasing)
            threads.wait()
        }
        logger.info("workers stopped")
    }

    /// Wakes idle workers now (new assets were queued by this process).
    public func notifyNewWork() { wake.broadcast() }

    private func cleanSpool() {
        do {
            let referenced = try pool.withConnection { try queue.referencedSpoolPaths(on: $0) }
            let removed = archiver.spool.cleanOrphans(referenced: referenced)
            if removed > 0 { logger.info("orphaned spool files removed", metadata: ["count": "\(removed)"]) }
        } catch {
            logger.warning("spool clean-up skipped: database unavailable", metadata: ["error": "\(error)"])
        }
    }

    private func workerLoop() {
        let session = CurlSession()
        while running.load(ordering: .acquiring) {
            let job: ArchiveJob?
            do {
                job = try pool.withConnection { try queue.claim(on: $0) }
            } catch {
                logger.warning("claim failed", metadata: ["error": "\(error)"])
                wake.wait(timeout: configuration.pollInterval)
                continue
            }
            guard let job else {
                wake.wait(timeout: configuration.pollInterval)
                continue
            }
            inFlight.withLock { $0[job.assetID] = InFlight(token: job.claimToken, lost: false) }
            let id = job.assetID
            archiver.process(job, session: session) { [self] in
                aborting.load(ordering: .acquiring) || inFlight.withLock { $0[id]?.lost ?? false }
            }
            inFlight.withLock { _ = $0.removeValue(forKey: id) }
        }
    }

    /// Renews the leases of running jobs every third of a lease, and returns expired leases (of crashed
    /// daemons) to the queue so their work is picked up within one lease period.
    private func leaseLoop() {
        let interval = max(0.2, Double(queue.leaseSeconds) / 3)
        while running.load(ordering: .acquiring) || !inFlight.withLock({ $0.isEmpty }) {
            let jobs = inFlight.withLock { $0.map { ($0.key, $0.value.token) } }
            do {
                let lost = try pool.withConnection { connection -> Set<Int64> in
                    let lost = try queue.renew(jobs, on: connection)
                    if try queue.reclaimExpiredLeases(on: connection) > 0 { wake.broadcast() }
                    return lost
                }
                if !lost.isEmpty {
                    logger.warning("leases lost; abandoning those transfers", metadata: ["assets": "\(lost.sorted())"])
                    inFlight.withLock { for id in lost { $0[id]?.lost = true } }
                }
            } catch {
                logger.warning("lease renewal failed", metadata: ["error": "\(error)"])
            }
            wake.sleep(timeout: interval, unlessStopped: { !self.running.load(ordering: .acquiring) && self.inFlight.withLock { $0.isEmpty } })
        }
    }

    /// Wakes idle workers on every notification, and once listening again (anything queued meanwhile).
    private func listenLoop() {
        let isRunning = { self.running.load(ordering: .acquiring) }
        ChannelListener(databaseURL: databaseURL, channel: ReplicateIntake.assetsChannel).run(
            while: isRunning,
            connected: { wake.broadcast() },
            received: { _ in wake.broadcast() },
            failed: { error in logger.debug("LISTEN connection failed; polling until it is back", metadata: ["error": "\(error)"]) },
            pause: { wake.sleep(timeout: 1, unlessStopped: { !isRunning() }) })
    }
}

/// A condition idle threads wait on; broadcast wakes them all.
final class WakeSignal: Sendable {
    private let condition = NSConditionBox()

    func broadcast() { condition.broadcast() }
    func wait(timeout: TimeInterval) { condition.wait(timeout: timeout) }
    /// Waits up to `timeout`, returning early when woken and `stopped()` holds.
    func sleep(timeout: TimeInterval, unlessStopped stopped: () -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, !stopped() { condition.wait(timeout: min(0.2, deadline.timeIntervalSinceNow)) }
    }
}

/// NSCondition is thread-safe but not marked Sendable in corelibs-foundation.
final class NSConditionBox: @unchecked Sendable {
    // Safe: NSCondition is a pthread mutex + condvar pair, meant to be shared across threads.
    private let condition = NSCondition()
    private var generation = 0

    func broadcast() {
        condition.lock()
        generation &+= 1
        condition.broadcast()
        condition.unlock()
    }

    func wait(timeout: TimeInterval) {
        condition.lock()
        let start = generation
        let deadline = Date().addingTimeInterval(max(0, timeout))
        while generation == start, condition.wait(until: deadline) {}
        condition.unlock()
    }
}
