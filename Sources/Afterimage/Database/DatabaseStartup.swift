import Foundation
import Logging
import PQ
import Synchronization

/// Brings the database into service in the background, so the daemon can start, bind and answer while
/// PostgreSQL is away: connects, applies pending migrations (`database.migrate`), and only then lets the
/// pool admit callers. Until then everything that needs the database answers 503 + Retry-After (the pool
/// refuses at once), `/readyz` says the database is unavailable and `STATUS=` says what is awaited.
/// Failed attempts are retried with backoff (1, 2, 4, 8, then every 10 s, with jitter).
///
/// A failure that waiting cannot fix (a changed or refused migration) is fatal: it is handed to
/// `onFatal`, and the daemon stops with exit status 1, as a failed start always did.
public final class DatabaseStartup: DaemonComponent {
    let databaseURL: String
    let migrate: Bool
    let limits: SessionLimits
    let pool: Pool
    let status: ServiceStatus
    let logger: Logger
    let onFatal: @Sendable (any Error) -> Void
    private let ready = Atomic<Bool>(false)
    /// Signalled once, when the first attempt has ended (either way).
    private let firstAttemptDone = DispatchSemaphore(value: 0)
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup

    public let name = "database startup"
    /// An attempt in progress (a migration, say) is not waited for: it is rolled back when the session ends.
    public let stopBudget: Duration = .seconds(2)
    static let longestBackoff: TimeInterval = 10

    public init(
        databaseURL: String, migrate: Bool, limits: SessionLimits, pool: Pool, status: ServiceStatus,
        heartbeats: Heartbeats? = nil, logger: Logger, onFatal: @escaping @Sendable (any Error) -> Void
    ) {
        self.databaseURL = databaseURL
        self.migrate = migrate
        self.limits = limits
        self.pool = pool
        self.status = status
        self.logger = logger
        self.onFatal = onFatal
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    /// True once the schema is current and the pool admits callers.
    public var isReady: Bool { ready.load(ordering: .acquiring) }

    /// How long `start` waits for the first attempt. With PostgreSQL there, the first attempt connects and
    /// migrates in well under this, so the HTTP server (started after this component) never answers 503
    /// while the database is merely being connected to: a restart under socket activation keeps webhooks
    /// waiting in the listen backlog instead. With PostgreSQL away the attempt fails at once (or after the
    /// connect timeout) and the daemon goes on to serve its 503s; a long migration is left running.
    static let firstAttemptWait: Duration = .seconds(30)

    public func start() {
        status.set(.waiting, "waiting for the database")
        threads.spawn("afterimage-database") { [self] heartbeat in run(heartbeat) }
        _ = firstAttemptDone.wait(timeout: .now() + Self.firstAttemptWait.timeInterval)
    }

    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// Seconds before attempt `attempt + 1` (0-based): 1, 2, 4, 8, 10, 10, … each ±20 %.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        let base = min(longestBackoff, pow(2, Double(min(attempt, 10))))
        return base * Double.random(in: 0.8...1.2)
    }

    private func run(_ heartbeat: Heartbeat) {
        var attempt = 0
        var lastReason: String?
        defer { if attempt == 0 { firstAttemptDone.signal() } }
        while !stopSignal.isStopped {
            heartbeat.beat()
            do {
                let applied = try bringUp(heartbeat)
                pool.startAdmitting()
                ready.store(true, ordering: .releasing)
                status.set(.waiting, nil)
                logger.notice("database ready", metadata: ["migrations_applied": "\(applied.count)", "attempts": "\(attempt + 1)"])
                return
            } catch let error as MigrationError where !error.isTransient {
                logger.critical("database refused: the schema cannot be brought up to date", metadata: ["error": "\(error)"])
                status.set(.waiting, "database refused: \(error)")
                onFatal(error)
                return
            } catch {
                let delay = Self.backoff(afterAttempt: attempt)
                attempt += 1
                if attempt == 1 { firstAttemptDone.signal() }
                let reason = Self.reason(error)
                if reason != lastReason {
                    // Once per distinct cause: an outage is one warning, not one per attempt.
                    logger.warning("database unavailable; serving 503 and retrying", metadata: ["error": "\(error)"])
                    lastReason = reason
                } else {
                    logger.debug("database still unavailable", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                }
                status.set(.waiting, "waiting for the database (\(reason)); next try in \(Int(delay.rounded(.up))) s")
                stopSignal.sleep(delay, heartbeat: heartbeat)
            }
        }
    }

    /// Connects, then migrates or (with `database.migrate = false`) checks the session answers. Either way
    /// a schema migrated by a newer build (migrations this one does not know) is refused, fatally.
    private func bringUp(_ heartbeat: Heartbeat) throws -> [String] {
        let connection: Connection
        do {
            connection = try Connection.connect(
                url: databaseURL, connectTimeoutSeconds: Settings.Database.connectTimeoutSeconds,
                limits: limits)
        } catch {
            throw MigrationError(code: .database, message: "cannot connect: \(error)", cause: error)
        }
        defer { connection.close() }
        guard migrate else {
            try Migrator().checkKnown(on: connection)
            return []
        }
        // While another process migrates, wait (beating, and giving up at a stop); past the lock's bounded
        // wait this is retried like an outage.
        return try Migrator().migrate(
            on: connection, logger: logger,
            keepWaiting: { [stopSignal] in
                heartbeat.beat()
                return !stopSignal.isStopped
            })
    }

    /// A short cause for `STATUS=`: the error's kind, never the server's message (it may name hosts).
    static func reason(_ error: any Error) -> String {
        if let error = error as? MigrationError, error.code == .lockBusy { return "another process holds the migration lock" }
        guard let error = error as? MigrationError, let cause = error.cause else { return "error" }
        switch cause.code {
        case .connectionFailed: return "cannot connect"
        case .connectionLost: return "connection lost"
        default: return cause.sqlState.map { "SQLSTATE \($0)" } ?? "\(cause.code)"
        }
    }
}
