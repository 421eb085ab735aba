import Foundation
import Glibc
import Logging
import MicroHTTP
import PQ
import S3

/// The running daemon: a list of components (`DaemonComponent`) that `Lifecycle` starts in this order and
/// stops in exact reverse order, each stop bounded:
///
/// 1. the database pool (closed last),
/// 2. database startup: connects and applies migrations in the background, then lets the pool admit,
/// 3. the spool sweeper (stale spool files, once the database is ready and then periodically),
/// 4. the archive workers (they claim once the database is ready),
/// 5. the intake committers,
/// 6. the lookup refresher and 7. the lookup cache invalidator,
/// 8. the retention loop (due purges, object retention, raw-body retention),
/// 9. the reconciler (when configured),
/// 10. the HTTP server (only now: everything its routes hand work to is running),
/// 11. the queue monitor and 12. the watchdog.
///
/// Nothing here waits for PostgreSQL: the daemon binds and answers at once (webhooks and lookups 503 +
/// Retry-After, `/readyz` 503) until the database is ready, and after any later outage, without a restart.
public final class Daemon: Sendable {
    public let settings: Settings
    let logger: Logger
    let pool: Pool
    let storage: S3Client
    let server: HTTPServer
    let database: DatabaseStartup
    /// What SIGHUP may change while running (secrets, tokens, log level, fetch limits).
    public let reloadable: ReloadableSettings
    let notifier: SystemdNotifier
    let status: ServiceStatus
    /// Every loop's heartbeat, for the watchdog.
    public let heartbeats: Heartbeats
    let lifecycle: Lifecycle
    /// Errors that end the daemon after it started (a migration the database refuses): `serve` stops
    /// and exits 1 when one arrives.
    public let failures: AsyncStream<any Error>

    /// An event thread inside one callback this long is wedged (callbacks never block).
    static let eventThreadTolerance: Duration = .seconds(10)

    /// - Parameters:
    ///   - listeningSocket: an inherited listening socket (systemd socket activation) served instead of binding.
    ///   - notifier: readiness, status, reload and stop notifications to systemd (`serve` passes the real one).
    ///   - watchdogInterval: ping systemd's watchdog this often, while every loop beats (nil: off).
    public init(
        settings: Settings, logger: Logger, listeningSocket: Int32? = nil,
        notifier: SystemdNotifier = .disabled, watchdogInterval: Duration? = nil
    ) throws {
        try settings.validateForServe()
        self.settings = settings
        self.logger = logger
        self.notifier = notifier
        let databaseURL = try settings.requireDatabaseURL()
        let limits = settings.database.sessionLimits
        let status = ServiceStatus(notifier: notifier)
        self.status = status
        let heartbeats = Heartbeats(defaultTolerance: settings.database.longestStep + .seconds(30))
        self.heartbeats = heartbeats
        let (failures, failed) = AsyncStream<any Error>.makeStream()
        self.failures = failures

        let pool = Pool(
            url: databaseURL, size: settings.database.poolSize,
            acquireTimeout: .milliseconds(settings.database.acquireTimeoutMilliseconds),
            connectTimeoutSeconds: Settings.Database.connectTimeoutSeconds, limits: limits, admitting: false)
        self.pool = pool
        storage = try settings.storage.makeClient()
        let reloadable = ReloadableSettings(settings)
        self.reloadable = reloadable
        let database = DatabaseStartup(
            databaseURL: databaseURL, migrate: settings.database.migrate, limits: limits, pool: pool,
            status: status, heartbeats: heartbeats, logger: logger,
            onFatal: { error in failed.yield(error) })
        self.database = database
        let databaseReady: @Sendable () -> Bool = { database.isReady }

        let queue = ArchiveQueue(
            leaseSeconds: settings.workers.leaseSeconds,
            instanceName: "\(ProcessInfo.processInfo.hostName)/\(getpid())")
        let spool = try Spool(directory: settings.workers.spoolDirectory)
        // Every provider (Providers/<Name>/, listed in ProviderRegistry): its route, intake, credential rules,
        // inline decoding and polling. Fetched webhook key sets are kept beside the spool.
        let providers = ProviderRegistry.make(
            ProviderContext(
                settings: settings, reloadable: reloadable,
                keyCacheDirectory: settings.workers.spoolDirectory + "/keys", logger: logger))
        let archiver = Archiver(
            queue: queue, pool: pool, storage: storage, spool: spool,
            layout: StorageLayout(prefix: settings.storage.prefix), policy: { reloadable.fetchPolicy },
            sourceCredential: { provider in reloadable.current.sourceCredential(for: provider) },
            multipartThreshold: settings.storage.multipartThreshold, partSize: settings.storage.partSize,
            providers: providers, logger: logger)
        var workerConfiguration = ArchiveWorkers.Configuration(count: settings.workers.count)
        workerConfiguration.drainTimeout = .seconds(settings.workers.drainTimeoutSeconds)
        let workers = ArchiveWorkers(
            archiver: archiver, databaseURL: databaseURL, limits: limits, configuration: workerConfiguration,
            databaseReady: databaseReady, heartbeats: heartbeats, logger: logger)
        let sweeper = SpoolSweeper(
            spool: spool, pool: pool, interval: TimeInterval(settings.workers.spoolSweepIntervalSeconds),
            databaseReady: databaseReady, heartbeats: heartbeats, logger: logger)

        let reconciler = try ReconcileService.fromSettings(
            settings, currentToken: { reloadable.current.replicate.apiToken },
            heartbeats: heartbeats, databaseReady: databaseReady, logger: logger)

        var intakeConfiguration = IntakeBatcher.Configuration()
        intakeConfiguration.waitTimeout = TimeInterval(settings.http.intakeTimeoutSeconds)
        let recorder = DeliveryRecorder(providers: providers.compactMap { $0 as? any IntakeProvider }, spool: spool)
        let intake = IntakeBatcher(recorder: recorder, pool: pool, configuration: intakeConfiguration, heartbeats: heartbeats, logger: logger)
        let lookupCache = LookupCache(lifetimeSeconds: settings.api.lookupCacheSeconds, maxBytes: settings.api.lookupCacheBytes)
        let refresher = LookupRefresher(pool: pool, cache: lookupCache, heartbeats: heartbeats)
        let lookupBatcher = LookupBatcher(pool: pool, cache: lookupCache, heartbeats: heartbeats)
        let invalidator = LookupCacheInvalidator(
            cache: lookupCache, databaseURL: databaseURL, limits: limits,
            heartbeats: heartbeats, logger: logger)
        let monitor = QueueMonitor(pool: pool, status: status, heartbeats: heartbeats, logger: logger)
        let deleter = PredictionDeleter(
            storage: storage, layout: StorageLayout(prefix: settings.storage.prefix), spool: spool,
            leaseSeconds: settings.workers.leaseSeconds, logger: logger)
        var retentionConfiguration = RetentionService.Configuration()
        retentionConfiguration.interval = TimeInterval(settings.retention.intervalSeconds)
        retentionConfiguration.deliveryBodiesSeconds = settings.retention.deliveryBodiesSeconds
        retentionConfiguration.objectsSeconds = settings.retention.objectsSeconds
        let retention = RetentionService(
            pool: pool, deleter: deleter, configuration: retentionConfiguration,
            databaseReady: databaseReady, heartbeats: heartbeats, logger: logger)

        var router = Router(unhandledError: UnhandledErrors.renderer(logger: logger))
        HealthRoutes(pool: pool, storage: storage, logger: logger).register(on: &router)
        MetricsRoute(pool: pool, monitor: monitor).register(on: &router)
        for case let provider as any WebhookProvider in providers {
            WebhookRoute(provider: provider, batcher: intake, pool: pool, spool: spool, lookupCache: lookupCache, logger: logger)
                .register(on: &router)
        }
        ArchiveAPIRoute(
            pool: pool, recorder: recorder, policy: { reloadable.fetchPolicy },
            archiveTokens: { reloadable.archiveAuthenticator }, readTokens: { reloadable.apiAuthenticator },
            lookupCache: lookupCache, logger: logger
        )
        .register(on: &router)
        LookupRoutes(
            pool: pool, presigner: Presigner(storage: storage, defaultTTL: settings.storage.presignTTL),
            authenticator: { reloadable.apiAuthenticator }, cache: lookupCache, refresher: refresher, batcher: lookupBatcher, logger: logger
        )
        .register(on: &router)
        DeleteRoute(
            pool: pool, deleter: deleter, deleteTokens: { reloadable.deleteAuthenticator },
            readTokens: { reloadable.apiAuthenticator }, cache: lookupCache, logger: logger
        )
        .register(on: &router)
        ConsoleRoutes(settings: settings, logger: logger).register(on: &router)
        let server = HTTPServer(
            router: router,
            configuration: .init(
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
        self.server = server

        let watchdog = watchdogInterval.map { interval in
            Watchdog(interval: interval, notifier: notifier, logger: logger) {
                var stalled = heartbeats.stalled()
                let busy = server.longestEventThreadCallback
                if busy > Self.eventThreadTolerance { stalled.append((name: "http event thread", silence: busy)) }
                return stalled
            }
        }

        var components: [any DaemonComponent] = [
            PoolComponent(pool), database, sweeper, workers, intake, lookupBatcher, refresher, invalidator, retention,
        ]
        if let reconciler { components.append(reconciler) }
        components += [HTTPServerComponent(server, drainTimeout: Self.httpDrainTimeout), monitor]
        if let watchdog { components.append(watchdog) }
        lifecycle = Lifecycle(components, logger: logger)
    }

    /// How long a stop waits for requests in flight (and handlers) before answering them 503 itself.
    static let httpDrainTimeout: Duration = .seconds(10)

    /// Starts every component in order. Returns once the HTTP server accepts (the database may still be
    /// on its way), then tells systemd `READY=1` with a `STATUS=` saying what is still awaited.
    public func start() throws {
        try lifecycle.start()
        logger.info("listening", metadata: ["host": "\(settings.http.host)", "port": "\(server.boundPort)"])
        status.set(.serving, "serving on port \(server.boundPort)")
        status.notify(["READY=1"])
    }

    public var boundPort: Int { server.boundPort }

    /// True once the schema is current and the database admits requests.
    public var isDatabaseReady: Bool { database.isReady }

    /// Stops every component in reverse order: the watchdog and monitor, then the HTTP server (stops
    /// accepting, lets requests finish, answers the rest 503), the reconciler and lookup helpers, the intake
    /// committers (what is queued is committed), the workers (drain, abort, release leases), the database
    /// startup, the pool. Bounded by `stopBudget`.
    public func stop() {
        logger.info("stopping", metadata: ["budget": "\(lifecycle.stopBudget)"])
        notifier.notify(["STOPPING=1", SystemdNotifier.status("draining: finishing requests and transfers")])
        lifecycle.stop()
        logger.info("stopped")
    }

    /// The longest a stop can take with these settings; `TimeoutStopSec=` in the unit must exceed it.
    public var stopBudget: Duration { lifecycle.stopBudget }

    /// The names of the components, in start order.
    public var componentNames: [String] { lifecycle.components.map(\.name) }
}

/// The pool as a component: nothing to start (it connects lazily), closed last.
final class PoolComponent: DaemonComponent {
    let pool: Pool
    let name = "database pool"
    let stopBudget: Duration = .seconds(1)
    init(_ pool: Pool) { self.pool = pool }
    func start() {}
    func stop() { pool.close() }
}

/// The HTTP server as a component: binds on start; on stop, quiesces and drains, answering requests still
/// waiting for a handler with 503 at the drain deadline.
final class HTTPServerComponent: DaemonComponent {
    let server: HTTPServer
    let drainTimeout: Duration
    let name = "http server"
    /// The drain, then a second for the event threads to send what was answered last.
    var stopBudget: Duration { drainTimeout + .seconds(1) }

    init(_ server: HTTPServer, drainTimeout: Duration) {
        self.server = server
        self.drainTimeout = drainTimeout
    }

    func start() throws { try server.start() }
    func stop() { server.stop(drainTimeout: drainTimeout, handlerDeadline: drainTimeout) }
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
        let outcome: String
        var applied = false
        do {
            let new = try await load()
            try new.validateForServe()
            let ignored = reloadable.apply(new)
            LogSetup.setLevel(LogSetup.level(named: new.logLevel) ?? .info)
            if !ignored.isEmpty {
                logger.warning(
                    "reload: these keys changed but take effect only after a restart",
                    metadata: ["keys": "\(ignored.joined(separator: ","))"])
            }
            logger.notice("configuration reloaded", metadata: ["log_level": "\(new.logLevel)"])
            outcome = "configuration reloaded"
            applied = true
        } catch {
            // ConfigurationError names the key and never carries a secret's value.
            logger.error("reload refused; the running configuration is kept", metadata: ["error": "\(error)"])
            outcome = "reload refused: \(error)"
        }
        status.notify(["READY=1"], prefix: outcome)
        return applied
    }
}
