import Foundation
import Logging
import Synchronization

/// The reconciler as a long-running part of the daemon: a thread that runs a pass at start and then
/// every `replicate.reconcile_interval` seconds, covering predictions created in the last
/// `replicate.retention + replicate.reconcile_margin` seconds (older outputs are gone anyway).
///
/// A thread, like the archive workers: a pass blocks on libcurl and libpq. Nothing it meets ends the
/// daemon: errors are logged and the next pass tries again, except a refused token (401/403), which is
/// logged once and pauses reconciliation until restart — another request would only be refused again.
public final class ReconcileService: Sendable {
    let reconciler: ReplicateReconciler
    let interval: TimeInterval
    let window: TimeInterval
    let logger: Logger
    let stopSignal: StopSignal
    private let started = Atomic<Bool>(false)
    private let finished = DispatchGroup()

    /// On by default whenever a token is set: without one the list endpoint cannot be read.
    public static func isEnabled(_ settings: Settings) -> Bool {
        settings.replicate.reconcileInterval > 0 && !(settings.replicate.apiToken ?? "").isEmpty
    }

    /// Nil when reconciliation is off: no `replicate.api_token`, or `replicate.reconcile_interval = 0`.
    public static func fromSettings(_ settings: Settings, logger: Logger) throws(ConfigurationError) -> ReconcileService? {
        guard isEnabled(settings), let token = settings.replicate.apiToken else { return nil }
        let stopSignal = StopSignal()
        // The daemon's own spool: data: outputs found by reconciliation are decoded into it as a webhook's are.
        let reconciler = try settings.makeReplicateReconciler(
            token: token, logger: logger, sleep: { stopSignal.sleep($0) }, shouldAbort: { stopSignal.isStopped },
            spool: try? Spool(directory: settings.workers.spoolDirectory))
        return ReconcileService(reconciler: reconciler, interval: TimeInterval(settings.replicate.reconcileInterval),
                                window: TimeInterval(settings.replicate.retention + settings.replicate.reconcileMargin),
                                stopSignal: stopSignal, logger: logger)
    }

    init(reconciler: ReplicateReconciler, interval: TimeInterval, window: TimeInterval, stopSignal: StopSignal, logger: Logger) {
        self.reconciler = reconciler
        self.interval = interval
        self.window = window
        self.stopSignal = stopSignal
        self.logger = logger
    }

    public func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.enter()
        let thread = Thread { [self] in
            defer { finished.leave() }
            loop()
        }
        thread.name = "afterimage-reconcile"
        thread.start()
        logger.info("reconciler started", metadata: ["interval": "\(Int(interval))", "window": "\(Int(window))"])
    }

    /// Ends the running pass at its next request or wait (a transfer is aborted within about a second),
    /// then returns once the thread has ended.
    public func stop() {
        stopSignal.stop()
        guard started.load(ordering: .acquiring) else { return }
        finished.wait()
    }

    private func loop() {
        while !stopSignal.isStopped {
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
                return
            } catch {
                logger.warning("reconcile pass failed; the next one will try again", metadata: ["error": "\(error)"])
            }
            _ = stopSignal.sleep(interval)
        }
    }
}

/// A stop flag whose waits end as soon as it is set.
final class StopSignal: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let wake = WakeSignal()

    var isStopped: Bool { stopped.load(ordering: .acquiring) }

    func stop() {
        stopped.store(true, ordering: .releasing)
        wake.broadcast()
    }

    /// Waits up to `seconds`; false when stopped (before or during the wait).
    func sleep(_ seconds: TimeInterval) -> Bool {
        wake.sleep(timeout: seconds, unlessStopped: { self.isStopped })
        return !isStopped
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
        return ReplicateReconciler(api: api, intake: ReplicateIntake(retentionSeconds: replicate.retention, spool: spool),
                                   configuration: configuration, logger: logger)
    }
}
