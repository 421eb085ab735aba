import Foundation
import Logging
import MicroHTTP
import PQ
import S3

/// The running daemon: the database pool, the storage client, the HTTP server and the archive workers,
/// started in the order that makes readiness true (schema first, then workers and listeners) and
/// stopped in reverse (stop accepting, drain requests, drain transfers, close the database).
public final class Daemon: Sendable {
    public let settings: Settings
    let logger: Logger
    let pool: Pool
    let storage: S3Client
    let server: HTTPServer
    let workers: ArchiveWorkers
    let intake: IntakeBatcher
    let lookupCacheInvalidator: LookupCacheInvalidator
    /// What SIGHUP may change while running (secrets, tokens, log level, fetch limits).
    public let reloadable: ReloadableSettings
    let notifier: SystemdNotifier
    let watchdog: Watchdog?
    let monitor: QueueMonitor
    /// Nil when reconciliation is off (no `replicate.api_token`, or `replicate.reconcile_interval = 0`).
    let reconciler: ReconcileService?

    /// - Parameters:
    ///   - listeningSocket: an inherited listening socket (systemd socket activation) served instead of binding.
    ///   - notifier: readiness, status, reload and stop notifications to systemd (`serve` passes the real one).
    ///   - watchdogInterval: ping systemd's watchdog this often, after a database check (nil: off).
    public init(settings: Settings, logger: Logger, listeningSocket: Int32? = nil,
                notifier: SystemdNotifier = .disabled, watchdogInterval: Duration? = nil) throws {
        try settings.validateForServe()
        self.settings = settings
        self.logger = logger
        let databaseURL = try settings.requireDatabaseURL()
        pool = Pool(url: databaseURL, size: settings.database.poolSize,
                    acquireTimeout: .milliseconds(settings.database.acquireTimeoutMilliseconds))
        storage = try settings.storage.makeClient()
        let reloadable = ReloadableSettings(settings)
        self.reloadable = reloadable
        self.notifier = notifier
        monitor = QueueMonitor(pool: pool, notifier: notifier, logger: logger)
        watchdog = watchdogInterval.map { [pool] interval in
            Watchdog(interval: interval, notifier: notifier, logger: logger) {
                (try? pool.withConnection { connection in _ = try connection.query("SELECT 1") }) != nil
            }
        }

        let queue = ArchiveQueue(leaseSeconds: settings.workers.leaseSeconds,
                                 instanceName: "\(ProcessInfo.processInfo.hostName)/\(getpid())")
        let spool = try Spool(directory: settings.workers.spoolDirectory)
        let archiver = Archiver(
            queue: queue, pool: pool, storage: storage, spool: spool,
            layout: StorageLayout(prefix: settings.storage.prefix), policy: { reloadable.fetchPolicy },
            sourceCredential: { provider in reloadable.current.sourceCredential(for: provider) },
            multipartThreshold: settings.storage.multipartThreshold, partSize: settings.storage.partSize,
            stability: StabilitySource(apiKeys: { reloadable.current.stability.apiKeys }), logger: logger)
        workers = ArchiveWorkers(archiver: archiver, databaseURL: databaseURL,
                                 configuration: .init(count: settings.workers.count), logger: logger)

        reconciler = try ReconcileService.fromSettings(settings, logger: logger)

        var router = Router()
        HealthRoutes(pool: pool, storage: storage, logger: logger).register(on: &router)
        MetricsRoute(pool: pool, monitor: monitor).register(on: &router)
        intake = IntakeBatcher(intake: ReplicateIntake(retentionSeconds: settings.replicate.retention, spool: spool), pool: pool, logger: logger)
        let lookupCache = LookupCache(lifetimeSeconds: settings.api.lookupCacheSeconds)
        lookupCacheInvalidator = LookupCacheInvalidator(cache: lookupCache, databaseURL: databaseURL, logger: logger)
        ReplicateWebhookRoute(verifier: { reloadable.replicateVerifier }, batcher: intake, lookupCache: lookupCache, logger: logger)
            .register(on: &router, maxBodyBytes: settings.http.maxBodyBytes)
        StabilityWebhookRoute(verifier: { reloadable.stabilityVerifier }, intake: StabilityIntake(baseURL: settings.stability.baseURL, spool: spool),
                              pool: pool, lookupCache: lookupCache, logger: logger)
            .register(on: &router, maxBodyBytes: settings.http.stabilityMaxBodyBytes)
        LookupRoutes(pool: pool, presigner: Presigner(storage: storage, defaultTTL: settings.storage.presignTTL),
                     authenticator: { reloadable.apiAuthenticator }, cache: lookupCache, logger: logger).register(on: &router)
        ConsoleRoutes(settings: settings, logger: logger).register(on: &router)
        server = HTTPServer(router: router, configuration: .init(
            host: settings.http.host, port: settings.http.port, listeningSocket: listeningSocket,
            connectionTimeoutSeconds: settings.http.connectionTimeoutSeconds,
            connectionLimit: settings.http.connectionLimit,
            perIPConnectionLimit: settings.http.perIPConnectionLimit,
            headerTimeoutSeconds: settings.http.headerTimeoutSeconds,
            requestTimeoutSeconds: settings.http.requestTimeoutSeconds,
            // `http.max_body_bytes` is the Replicate route's own limit; other routes keep the server's 1 MiB default.
            maxInflightBodyBytes: settings.http.maxInflightBodyBytes,
            // Large bodies wait in unnamed files beside the spool while they arrive (see BodyStore).
            bodySpillDirectory: settings.workers.spoolDirectory))
    }

    /// Applies migrations (unless `database.migrate = false`), starts the workers, then listens.
    public func start() throws {
        if settings.database.migrate {
            let applied = try Migrator().migrate(databaseURL: try settings.requireDatabaseURL(), logger: logger)
            logger.info("schema current", metadata: ["applied": "\(applied.count)"])
        }
        workers.start()
        intake.start()
        lookupCacheInvalidator.start()
        reconciler?.start()
        try server.start()
        logger.info("listening", metadata: ["host": "\(settings.http.host)", "port": "\(server.boundPort)"])
        monitor.start()
        watchdog?.start()
        // Only now: the schema is current, the workers run and the socket accepts.
        notifier.notify(["READY=1", SystemdNotifier.status("serving on port \(server.boundPort)")])
    }

    public var boundPort: Int { server.boundPort }

    /// Stops accepting, lets in-flight requests finish, drains transfers, then closes the database.
    public func stop() {
        logger.info("stopping")
        notifier.notify(["STOPPING=1", SystemdNotifier.status("draining: finishing requests and transfers")])
        watchdog?.stop()
        monitor.stop()
        server.stop(drainTimeout: .seconds(10))
        intake.stop()
        lookupCacheInvalidator.stop()
        reconciler?.stop()
        workers.stop(drainTimeout: .seconds(settings.workers.drainTimeoutSeconds))
        pool.close()
        logger.info("stopped")
    }
}

extension Daemon {
    /// SIGHUP: loads the configuration again and applies its reloadable parts, telling systemd it is
    /// reloading (`RELOADING=1` with `MONOTONIC_USEC=`) and ready again (`READY=1`) either way.
    /// A configuration that does not load or validate is refused whole: the old one stays in force,
    /// the error goes to the log and to `STATUS=`. Listeners, connections and transfers are untouched.
    /// Returns whether the new configuration was applied.
    @discardableResult
    public func reload(from load: () async throws -> Settings) async -> Bool {
        notifier.notify(["RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())"])
        let status: String
        var applied = false
        do {
            let new = try await load()
            try new.validateForServe()
            let ignored = reloadable.apply(new)
            LogSetup.setLevel(LogSetup.level(named: new.logLevel) ?? .info)
            if !ignored.isEmpty {
                logger.warning("reload: these keys changed but take effect only after a restart",
                               metadata: ["keys": "\(ignored.joined(separator: ","))"])
            }
            logger.notice("configuration reloaded", metadata: ["log_level": "\(new.logLevel)"])
            status = "configuration reloaded"
            applied = true
        } catch {
            // ConfigurationError names the key and never carries a secret's value.
            logger.error("reload refused; the running configuration is kept", metadata: ["error": "\(error)"])
            status = "reload refused: \(error)"
        }
        notifier.notify(["READY=1", SystemdNotifier.status(status)])
        return applied
    }
}
