import Afterimage
import ArgumentParser
import Foundation
import Logging
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon: webhooks in, outputs archived, lookups answered.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let settings = try await common.loadSettings()
        LogSetup.bootstrap(level: LogSetup.level(named: settings.logLevel) ?? .info)
        AfterimageMetrics.bootstrap()
        let logger = Logger(label: "afterimage")
        // The one place signals are handled, trapped before anything else: SIGHUP's default action is
        // to terminate. swift-service-lifecycle's UnixSignals delivers them as an async sequence from a
        // dispatch source, where any code may run (a real signal handler may call almost nothing).
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        let inherited = try runReportingErrors { try SocketActivation.listeningSocket() }
        SocketActivation.clearEnvironment()
        if let inherited { logger.info("serving the socket passed by systemd", metadata: ["fd": "\(inherited)"]) }
        let daemon = try runReportingErrors {
            try Daemon(
                settings: settings, logger: logger, listeningSocket: inherited,
                notifier: SystemdNotifier(), watchdogInterval: Watchdog.interval())
        }
        try runReportingErrors { try daemon.start() }
        let reloadReceipt = ReloadReceipt(environment: ProcessInfo.processInfo.environment)
        var failure: (any Error)?
        for await event in Self.events(signals: signals, failures: daemon.failures) {
            switch event {
            case .signal(.sighup):
                logger.info("signal received", metadata: ["signal": "HUP"])
                let started = SystemdNotifier.monotonicMicroseconds()
                let applied = await daemon.reload { try await SettingsLoader.load(configFile: common.config) }
                // `afterimage reload` (ExecReload=) waits for this confirmation.
                do { try reloadReceipt?.record(startedAt: started, applied: applied) } catch {
                    logger.warning("reload: cannot write the confirmation for `afterimage reload`", metadata: ["error": "\(error)"])
                }
                continue
            case .signal(let signal):
                logger.info("signal received", metadata: ["signal": "\(signal == .sigint ? "INT" : "TERM")"])
            case .failure(let error):
                failure = error
            }
            break
        }
        daemon.stop()
        if let failure {
            printError("afterimage: \(failure)")
            throw ExitStatus.runtimeFailure
        }
    }

    enum Event: Sendable {
        case signal(UnixSignal)
        /// The daemon cannot go on (a migration the database refuses).
        case failure(any Error)
    }

    /// Signals and the daemon's fatal errors, in arrival order.
    static func events(signals: UnixSignalsSequence, failures: AsyncStream<any Error>) -> AsyncStream<Event> {
        AsyncStream { continuation in
            let fromSignals = Task {
                for await signal in signals { continuation.yield(.signal(signal)) }
            }
            let fromFailures = Task {
                for await error in failures { continuation.yield(.failure(error)) }
            }
            continuation.onTermination = { _ in
                fromSignals.cancel()
                fromFailures.cancel()
            }
        }
    }
}
