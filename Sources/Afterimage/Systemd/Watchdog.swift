import Foundation
import Glibc
import Logging
import Synchronization

/// The service watchdog (`WatchdogSec=`): systemd restarts the daemon when no `WATCHDOG=1` arrives within
/// `$WATCHDOG_USEC`. We ping at half that period, and only while every loop of the daemon's own (HTTP
/// event threads, intake committers, archive workers, listeners, …) has beaten its heartbeat recently, so
/// a daemon with a wedged thread is restarted. The database's health is not the watchdog's business: a
/// database outage is answered with 503s and waited out, and restarting the daemon would not end it.
public final class Watchdog: DaemonComponent {
    public let interval: Duration
    /// Names of the loops that are stalled, with how long; empty when all is well. Runs on the watchdog's
    /// own thread and must not block.
    private let stalled: @Sendable () -> [(name: String, silence: Duration)]
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let stopSignal = StopSignal()
    private let threads = ThreadGroup(heartbeats: nil)

    public let name = "watchdog"
    public let stopBudget: Duration = .seconds(1)

    /// - Parameters:
    ///   - interval: time between checks (half of `WATCHDOG_USEC`).
    ///   - stalled: the loops that have not beaten in time.
    public init(
        interval: Duration, notifier: SystemdNotifier, logger: Logger,
        stalled: @escaping @Sendable () -> [(name: String, silence: Duration)]
    ) {
        self.interval = interval
        self.notifier = notifier
        self.logger = logger
        self.stalled = stalled
    }

    /// Half of `WATCHDOG_USEC`, or nil when the watchdog is off: the variable is unset or zero, or
    /// `WATCHDOG_PID` names another process (the variables were inherited, not meant for us).
    public static func interval(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        pid: Int32 = getpid()
    ) -> Duration? {
        guard let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return .microseconds(Int64(clamping: usec / 2))
    }

    public func start() {
        let missed = Atomic<Bool>(false)
        let first = Atomic<Bool>(true)
        threads.repeating("afterimage-watchdog", every: interval.timeInterval, until: stopSignal) { [self] _ in
            // The first ping waits one interval: the daemon tells systemd READY=1 once every component has
            // started, and a ping must not overtake it.
            if first.exchange(false, ordering: .relaxed) { return }
            let stuck = stalled()
            if stuck.isEmpty {
                notifier.notify("WATCHDOG=1")
                if missed.exchange(false, ordering: .relaxed) { logger.notice("watchdog: every loop is beating again") }
            } else if !missed.exchange(true, ordering: .relaxed) {
                // Once per episode: the log is not the place to count missed pings.
                let names = stuck.map { "\($0.name) (silent \($0.silence))" }.joined(separator: ", ")
                logger.critical(
                    "watchdog: loops stalled, not pinging systemd (it restarts the daemon after WatchdogSec=)",
                    metadata: ["stalled": "\(names)"])
            }
        }
    }

    /// Ends the thread; returns once it has.
    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }
}
