import Foundation
import Logging
import Synchronization

/// The service watchdog (`WatchdogSec=`): systemd restarts the daemon when no `WATCHDOG=1` arrives
/// within `$WATCHDOG_USEC`. We ping at half that period, and only after a real `SELECT 1` through
/// the pool succeeded, so a daemon whose database access is wedged (pool exhausted, connections
/// hung, server gone) stops pinging and gets restarted, rather than merely a daemon whose process
/// has died.
public final class Watchdog: Sendable {
    public let interval: Duration
    private let check: @Sendable () -> Bool
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let running = Atomic<Bool>(false)
    private let wake = WakeSignal()
    private let finished = DispatchGroup()

    /// - Parameters:
    ///   - interval: time between checks (half of `WATCHDOG_USEC`).
    ///   - check: returns true when the daemon is healthy; runs on the watchdog's own thread.
    public init(interval: Duration, notifier: SystemdNotifier, logger: Logger, check: @escaping @Sendable () -> Bool) {
        self.interval = interval
        self.notifier = notifier
        self.logger = logger
        self.check = check
    }

    /// Half of `WATCHDOG_USEC`, or nil when the watchdog is off: the variable is unset or zero, or
    /// `WATCHDOG_PID` names another process (the variables were inherited, not meant for us).
    public static func interval(environment: [String: String] = ProcessInfo.processInfo.environment,
                                pid: Int32 = getpid()) -> Duration? {
        guard let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return .microseconds(Int64(clamping: usec / 2))
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.enter()
        let thread = Thread { [self] in
            defer { finished.leave() }
            loop()
        }
        thread.name = "afterimage-watchdog"
        thread.start()
    }

    /// Ends the thread; returns once it has (a check in progress finishes first).
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        finished.wait()
    }

    private func loop() {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        var missed = false
        while running.load(ordering: .acquiring) {
            let started = Date()
            if check() {
                notifier.notify("WATCHDOG=1")
                if missed { logger.notice("watchdog: health check passes again") }
                missed = false
            } else if !missed {
                // Once per outage: the log is not the place to count missed pings.
                logger.error("watchdog: health check failed; not pinging systemd (it restarts the daemon after WatchdogSec=)")
                missed = true
            }
            let remaining = seconds - Date().timeIntervalSince(started)
            if remaining > 0 {
                wake.sleep(timeout: remaining, unlessStopped: { !self.running.load(ordering: .acquiring) })
            }
        }
    }
}
