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
/// logged once and pauses reconciliation until the token changes (a reload) or the daemon restarts —
/// another request with the same token would only be refused again.
///
/// The token is read through the reloadable settings for every request, so a SIGHUP that rotates
/// `replicate.api_token` reaches the next request.
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
    /// The current `replicate.api_token` ("" when a reload removed it).
    let currentToken: @Sendable () -> String
    /// The token Replicate refused: passes pause while it is still the current one.
    private let refusedToken = Mutex<String?>(nil)

    public let name = "reconciler"
    /// A pass ends at its next request or wait (libcurl polls the stop flag about once a second).
    public let stopBudget: Duration = .seconds(3)

    /// On by default whenever a token is set: without one the list endpoint cannot be read.
    public static func isEnabled(_ settings: Settings) -> Bool {
        settings.replicate.reconcileInterval > 0 && !(settings.replicate.apiToken ?? "").isEmpty
    }

    /// Nil when reconciliation is off: no `replicate.api_token`, or `replicate.reconcile_interval = 0`.
    /// `currentToken` reads the token as reloaded (the daemon's `ReloadableSettings`); without it the
    /// start-up value is used for ever.
    public static func fromSettings(
        _ settings: Settings, currentToken: (@Sendable () -> String?)? = nil,
        heartbeats: Heartbeats? = nil,
        databaseReady: @escaping @Sendable () -> Bool = { true },
        logger: Logger
    ) throws(ConfigurationError) -> ReconcileService? {
        guard isEnabled(settings), let startToken = settings.replicate.apiToken else { return nil }
        let token: @Sendable () -> String
        if let currentToken {
            token = { currentToken() ?? "" }
        } else {
            token = { startToken }
        }
        let stopSignal = StopSignal()
        let heartbeat = Heartbeat(
            name: "afterimage-reconcile",
            tolerance: heartbeats?.defaultTolerance ?? ThreadGroup.unregisteredTolerance)
        // The daemon's own spool: data: outputs found by reconciliation are decoded into it as a webhook's are.
        let reconciler = try settings.makeReplicateReconciler(
            token: token, logger: logger, sleep: { stopSignal.sleep($0, heartbeat: heartbeat) },
            shouldAbort: {
                heartbeat.beat()
                return stopSignal.isStopped
            },
            spool: try? Spool(directory: settings.workers.spoolDirectory))
        return ReconcileService(
            reconciler: reconciler, interval: TimeInterval(settings.replicate.reconcileInterval),
            window: TimeInterval(settings.replicate.retention + settings.replicate.reconcileMargin),
            currentToken: token, stopSignal: stopSignal, heartbeat: heartbeat, heartbeats: heartbeats,
            databaseReady: databaseReady, logger: logger)
    }

    init(
        reconciler: ReplicateReconciler, interval: TimeInterval, window: TimeInterval,
        currentToken: @escaping @Sendable () -> String, stopSignal: StopSignal,
        heartbeat: Heartbeat, heartbeats: Heartbeats?, databaseReady: @escaping @Sendable () -> Bool, logger: Logger
    ) {
        self.reconciler = reconciler
        self.currentToken = currentToken
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
            if shouldRun() { pass() }
        }
        logger.info("reconciler started", metadata: ["interval": "\(Int(interval))", "window": "\(Int(window))"])
    }

    /// Ends the running pass at its next request or wait, then returns once the thread has ended.
    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// False while there is no token, or while the current one is the token Replicate refused.
    private func shouldRun() -> Bool {
        let token = currentToken()
        guard !token.isEmpty else {
            logger.debug("reconcile pass skipped: replicate.api_token is not set")
            return false
        }
        return refusedToken.withLock { refused in
            guard let refusedValue = refused else { return true }
            guard refusedValue != token else { return false }
            refused = nil
            logger.notice("replicate.api_token changed; reconciliation resumes")
            return true
        }
    }

    private func pass() {
        let token = currentToken()
        do {
            switch try reconciler.runPass(createdAfter: Date().addingTimeInterval(-window)) {
            case .completed(let s):
                let metadata: Logger.Metadata = [
                    "pages": "\(s.pages)", "seen": "\(s.seen)", "already_terminal": "\(s.alreadyTerminal)",
                    "recorded": "\(s.recorded)", "duplicates": "\(s.duplicates)", "assets": "\(s.assets)",
                    "refreshed": "\(s.refreshed)", "web_skipped": "\(s.web)", "kept_raw": "\(s.rejected)",
                ]
                if s.recorded > 0 {
                    logger.notice("reconcile pass recorded missed predictions", metadata: metadata)
                } else {
                    logger.info("reconcile pass done", metadata: metadata)
                }
            case .lockHeld:
                logger.info("reconcile pass skipped: another instance holds the reconcile lock")
            }
        } catch  where error.code == .stopped {
            return
        } catch  where error.code == .unauthorized {
            logger.error(
                "reconciliation paused: Replicate refused replicate.api_token (set a valid token and reload, or restart)",
                metadata: ["error": "\(error)"])
            // The token in force now: a reload that changed it meanwhile is tried at the next interval.
            let refused = token
            refusedToken.withLock { $0 = refused }
        } catch {
            logger.warning("reconcile pass failed; the next one will try again", metadata: ["error": "\(error)"])
        }
    }
}

extension Settings {
    /// A reconciler built from `replicate.*` settings; used by the daemon's service and by
    /// `afterimage reconcile`. `spool` is where data: outputs are decoded (the daemon passes its own; the
    /// command runs as another user and passes none, so the daemon's workers decode them).
    public func makeReplicateReconciler(
        token: @escaping @Sendable () -> String, logger: Logger,
        sleep: @escaping @Sendable (TimeInterval) -> Bool,
        shouldAbort: @escaping @Sendable () -> Bool,
        spool: Spool? = nil
    ) throws(ConfigurationError) -> ReplicateReconciler {
        let api = try ReplicateAPIClient(
            configuration: .init(baseURL: replicate.baseURL, currentToken: token),
            sleep: sleep, shouldAbort: shouldAbort)
        var configuration = ReplicateReconciler.Configuration(databaseURL: try requireDatabaseURL())
        configuration.staleAfter = TimeInterval(replicate.reconcileStaleAfter)
        configuration.reconcileWeb = replicate.reconcileWeb
        configuration.sessionLimits = database.sessionLimits
        return ReplicateReconciler(
            api: api, intake: ReplicateIntake(retentionSeconds: replicate.retention, spool: spool),
            configuration: configuration, logger: logger)
    }
}
