import Foundation
import Logging
import PQ

/// Removes stale spool files: at start (once the database is ready) and then every
/// `workers.spool_sweep_interval` seconds, so leftovers do not wait for a restart to go.
///
/// Stale means: a `.part` whose writer is gone (another live process's parts are left alone; this
/// process's are its own business, see below); a `.spool` or `.inline` file that no pending or in-flight
/// asset refers to (an asset that was stored, failed or expired, whose recorded spool path is then
/// cleared too, or no asset at all: a delivery that was never acknowledged), untouched for at least one
/// interval. An unreferenced `.inline` file of another live process is left alone: its intake may still
/// commit.
///
/// Never a file this process is writing or has written but not yet recorded: every spool writer claims
/// its paths (`SpoolClaims`) from before the file exists until the row that refers to it is committed,
/// and claimed paths are skipped. (Before claims, a clean-up at start took an intake's files for orphans,
/// and workers had to wait for it.) Files of other processes sharing the directory are protected by their
/// writer's pid in the name and by the age rule.
public final class SpoolSweeper: DaemonComponent {
    public struct Outcome: Sendable, Equatable {
        public var removed: [String] = []
        /// Recorded spool paths cleared because their file went with a finished asset.
        public var clearedReferences = 0
    }

    let spool: Spool
    let pool: Pool
    /// Seconds between sweeps, and how long a `.spool`/`.inline` file must be untouched to be taken.
    let interval: TimeInterval
    let databaseReady: @Sendable () -> Bool
    let logger: Logger
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup

    public let name = "spool sweeper"
    /// A sweep is a directory listing and one or two statements; the stop waits for the one under way.
    public let stopBudget: Duration = .seconds(2)

    public init(
        spool: Spool, pool: Pool, interval: TimeInterval, databaseReady: @escaping @Sendable () -> Bool = { true },
        heartbeats: Heartbeats? = nil, logger: Logger
    ) {
        self.spool = spool
        self.pool = pool
        self.interval = interval
        self.databaseReady = databaseReady
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        threads.repeating("afterimage-spool-sweep", every: interval, until: stopSignal) { [self] heartbeat in
            while !databaseReady() {
                guard stopSignal.sleep(1, heartbeat: heartbeat) else { return }
            }
            do {
                let outcome = try sweep()
                if !outcome.removed.isEmpty {
                    logger.info(
                        "stale spool files removed",
                        metadata: [
                            "count": "\(outcome.removed.count)",
                            "references_cleared": "\(outcome.clearedReferences)",
                        ])
                }
            } catch {
                logger.warning("spool sweep skipped: database unavailable", metadata: ["error": "\(error)"])
            }
        }
    }

    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// One sweep now.
    @discardableResult
    public func sweep(now: Date = Date()) throws -> Outcome {
        let found = spool.leftovers(untouchedFor: interval, now: now)
        var outcome = Outcome()
        for path in found.deadParts {
            unlink(path)
            outcome.removed.append(path)
        }
        guard !found.recorded.isEmpty else { return outcome }
        let states = try pool.withConnection { connection in try Self.states(of: found.recorded.map(\.path), on: connection) }
        var finished: [String] = []
        for file in found.recorded {
            let referencedBy = states[file.path] ?? []
            if referencedBy.contains(where: { $0 == "pending" || $0 == "in_flight" }) { continue }
            // Unreferenced: a live writer of another process may still commit its row.
            if referencedBy.isEmpty, file.writerAlive { continue }
            // Checked again right before the unlink: a writer of this process may have claimed it since.
            guard !SpoolClaims.shared.isClaimed(file.path) else { continue }
            unlink(file.path)
            outcome.removed.append(file.path)
            if !referencedBy.isEmpty { finished.append(file.path) }
        }
        if !finished.isEmpty {
            outcome.clearedReferences = try pool.withConnection { connection in
                try connection.execute(
                    """
                    UPDATE assets SET spool_path = NULL
                    WHERE spool_path = ANY($1) AND state IN ('stored', 'failed', 'expired')
                    """, [try PQArray<String>(finished.map { Optional($0) })])
            }
        }
        return outcome
    }

    /// The states of the assets that record each path.
    static func states(of paths: [String], on connection: Connection) throws -> [String: [String]] {
        var states: [String: [String]] = [:]
        for batch in stride(from: 0, to: paths.count, by: 1000).map({ Array(paths[$0..<min($0 + 1000, paths.count)]) }) {
            for row in try connection.query(
                "SELECT spool_path, state FROM assets WHERE spool_path = ANY($1)",
                [try PQArray<String>(batch.map { Optional($0) })])
            {
                states[try row.decode(0, as: String.self), default: []].append(try row.decode(1, as: String.self))
            }
        }
        return states
    }
}

extension Spool {
    struct Leftovers {
        /// `.part` files whose writer is gone: removed without asking anyone.
        var deadParts: [String] = []
        /// `.spool` and `.inline` files untouched long enough; the database decides.
        var recorded: [(path: String, writerAlive: Bool)] = []
    }

    /// The spool's files that may be stale, skipping every path this process has claimed.
    func leftovers(untouchedFor age: TimeInterval, now: Date) -> Leftovers {
        var found = Leftovers()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return found }
        for name in names {
            let path = "\(directory)/\(name)"
            let isPart = name.hasSuffix(".part")
            guard isPart || name.hasSuffix(".spool") || name.hasSuffix(Self.inlineSuffix) else { continue }
            guard !SpoolClaims.shared.isClaimed(path) else { continue }
            var info = stat()
            // lstat: a symlink or anything else that is not a plain file of ours is not touched.
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            let writer = Self.writerPID(name)
            let writerAlive = writer.map(Self.isOtherLiveProcess) ?? false
            if isPart {
                // This process's unclaimed parts are leftovers (a writer claims before it creates); another
                // live process's are its own.
                if !writerAlive { found.deadParts.append(path) }
                continue
            }
            let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))
            guard now.timeIntervalSince(modified) >= age else { continue }
            found.recorded.append((path, name.hasSuffix(Self.inlineSuffix) && writerAlive))
        }
        return found
    }

    /// The writer's pid in `….<pid>.part` and `….<pid>.inline` names; nil for `asset-<id>.spool`.
    static func writerPID(_ name: String) -> Int32? {
        let parts = name.split(separator: ".")
        guard parts.count >= 3 else { return nil }
        return Int32(parts[parts.count - 2])
    }

    /// A process other than this one that exists (EPERM: it exists, under another user).
    static func isOtherLiveProcess(_ pid: Int32) -> Bool {
        guard pid > 0, pid != getpid() else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }
}
