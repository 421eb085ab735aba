import Foundation
import Logging
import PQ
import Synchronization

/// The reconciler as a long-running part of the daemon: a thread that runs a pass at start and then
/// every `replicate.reconcile_interval` seconds, covering predictions created in the last
/// `replicate.retention + replicate.reconcile_margin` seconds (older outputs are gone anyway). Passes
/// wait until the database is ready (the schema current).
///
/// A thread, like the archive workers: a pass blocks on libcurl and libpq. Nothing it meets ends the
/// daemon: errors are logged and the next pass tries again, except a refused token (401/403), which is
/// logged once and pauses reconciliation until restart — another request would only be refused again.
public final class ReconcileService: DaemonComponent {
    let reconciler: ReplicateReconciler
    let interval: TimeInterval
    let window: TimeInterval
    let logger: Logger
    let stopSignal: StopSignal
    /// Beaten by the pass itself (every API request's progress and every wait), so a long pass that is
    /// moving is not mistaken for a stalled one.
    let heartbeat: Heartbeat
    /// True once the database can be used; passes wait for it.
    let databaseReady: @Sendable () -> Bool
    private let threads: ThreadGroup
    private let paused = Atomic<Bool>(false)

    public let name = "reconciler"
    /// A pass ends at its next request or wait (libcurl polls the stop flag about once a second).
    public let stopBudget: Duration = .seconds(3)

    /// On by default whenever a token is set: without one the list endpoint cannot be read.
    public static func isEnabled(_ settings: Settings) -> Bool {
        settings.replicate.reconcileInterval > 0 && !(settings.replicate.apiToken ?? "").isEmpty
    }

    /// Nil when reconciliation is off: no `replicate.api_token`, or `replicate.reconcile_interval = 0`.
    public static func fromSettings(_ settings: Settings, heartbeats: Heartbeats? = nil,
                                    databaseReady: @escaping @Sendable () -> Bool = { true },
                                    logger: Logger) throws(ConfigurationError) -> ReconcileService? {
        guard isEnabled(settings), let token = settings.replicate.apiToken else { return nil }
        let stopSignal = StopSignal()
        let heartbeat = Heartbeat(name: "afterimage-reconcile",
                                  tolerance: heartbeats?.defaultTolerance ?? ThreadGroup.unregisteredTolerance)
        // The daemon's own spool: data: outputs found by reconciliation are decoded into it as a webhook's are.
        let reconciler = try settings.makeReplicateReconciler(
            token: token, logger: logger, sleep: { stopSignal.sleep($0, heartbeat: heartbeat) },
            shouldAbort: {
                heartbeat.beat()
                return stopSignal.isStopped
            },
            spool: try? Spool(directory: settings.workers.spoolDirectory))
        return ReconcileService(reconciler: reconciler, interval: TimeInterval(settings.replicate.reconcileInterval),
                                window: TimeInterval(settings.replicate.retention + settings.replicate.reconcileMargin),
                                stopSignal: stopSignal, heartbeat: heartbeat, heartbeats: heartbeats,
                                databaseReady: databaseReady, logger: logger)
    }

    init(reconciler: ReplicateReconciler, interval: TimeInterval, window: TimeInterval, stopSignal: StopSignal,
         heartbeat: Heartbeat, heartbeats: Heartbeats?, databaseReady: @escaping @Sendable () -> Bool, logger: Logger) {
        self.reconciler = reconciler
        self.interval = interval
        self.window = window
        self.stopSignal = stopSignal
        self.heartbeat = heartbeat
        self.databaseReady = databaseReady
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        threads.repeating("afterimage-reconcile", every: interval, until: stopSignal, heartbeat: heartbeat) { [self] heartbeat in
            while !databaseReady() {
                guard stopSignal.sleep(1, heartbeat: heartbeat) else { return }
            }
            if !paused.load(ordering: .relaxed) { pass() }
        }
        logger.info("reconciler started", metadata: ["interval": "\(Int(interval))", "window": "\(Int(window))"])
    }

    /// Ends the running pass at its next request or wait, then returns once the thread has ended.
    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    private func pass() {
        do {
            switch try reconciler.runPass(createdAfter: Date().addingTimeInterval(-window)) {
            case .completed(let s):
                let metadata: Logger.Metadata = [
                    "pages": "\(s.pages)", "seen": "\(s.seen)", "already_terminal": "\(s.alreadyTerminal)",
                    "recorded": "\(s.recorded)", "duplicates": "\(s.duplicates)", "assets": "\(s.assets)",
                    "refreshed": "\(s.refreshed)", "web_skipped": "\(s.web)", "kept_raw": "\(s.rejected)",
                ]
                if s.recorded > 0 { logger.notice("reconcile pass recorded missed predictions", metadata: metadata) }
                else { logger.info("reconcile pass done", metadata: metadata) }
            case .lockHeld:
                logger.info("reconcile pass skipped: another instance holds the reconcile lock")
            }
        } catch where error.code == .stopped {
            return
        } catch where error.code == .unauthorized {
            logger.error("reconciliation paused until restart: Replicate refused replicate.api_token (check the token and restart)",
                         metadata: ["error": "\(error)"])
            paused.store(true, ordering: .relaxed)
        } catch {
            logger.warning("reconcile pass failed; the next one will try again", metadata: ["error": "\(error)"])
        }
    }
}

extension Settings {
    /// A reconciler built from `replicate.*` settings; used by the daemon's service and by
    /// `afterimage reconcile`. `spool` is where data: outputs are decoded (the daemon passes its own; the
    /// command runs as another user and passes none, so the daemon's workers decode them).
    public func makeReplicateReconciler(token: String, logger: Logger,
                                        sleep: @escaping @Sendable (TimeInterval) -> Bool,
                                        shouldAbort: @escaping @Sendable () -> Bool,
                                        spool: Spool? = nil) throws(ConfigurationError) -> ReplicateReconciler {
        let api = try ReplicateAPIClient(configuration: .init(baseURL: replicate.baseURL, token: token),
                                         sleep: sleep, shouldAbort: shouldAbort)
        var configuration = ReplicateReconciler.Configuration(databaseURL: try requireDatabaseURL())
        configuration.staleAfter = TimeInterval(replicate.reconcileStaleAfter)
        configuration.reconcileWeb = replicate.reconcileWeb
        configuration.sessionLimits = database.sessionLimits
        return ReplicateReconciler(api: api, intake: ReplicateIntake(retentionSeconds: replicate.retention, spool: spool),
                                   configuration: configuration, logger: logger)
    }
}
