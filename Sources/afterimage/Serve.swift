import Afterimage
import ArgumentParser
import Dispatch
import Foundation
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon: webhooks in, outputs archived, lookups answered.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let settings = try await common.loadSettings()
        LogSetup.bootstrap(level: LogSetup.level(named: settings.logLevel) ?? .info)
        AfterimageMetrics.bootstrap()
        let logger = Logger(label: "afterimage")
        // Before anything slow (migrations): SIGHUP's default action is to terminate.
        let signals = SignalEvents([SIGTERM, SIGINT, SIGHUP])
        let inherited = try runReportingErrors { try SocketActivation.listeningSocket() }
        SocketActivation.clearEnvironment()
        if let inherited { logger.info("serving the socket passed by systemd", metadata: ["fd": "\(inherited)"]) }
        let daemon = try runReportingErrors {
            try Daemon(settings: settings, logger: logger, listeningSocket: inherited,
                       notifier: SystemdNotifier(), watchdogInterval: Watchdog.interval())
        }
        try runReportingErrors { try daemon.start() }
        let reloadReceipt = ReloadReceipt(environment: ProcessInfo.processInfo.environment)
        for await signal in signals.events {
            if signal == SIGHUP {
                logger.info("signal received", metadata: ["signal": "HUP"])
                let started = SystemdNotifier.monotonicMicroseconds()
                let applied = await daemon.reload { try await SettingsLoader.load(configFile: common.config) }
                // `afterimage reload` (ExecReload=) waits for this confirmation.
                do { try reloadReceipt?.record(startedAt: started, applied: applied) } catch {
                    logger.warning("reload: cannot write the confirmation for `afterimage reload`", metadata: ["error": "\(error)"])
                }
                continue
            }
            logger.info("signal received", metadata: ["signal": "\(signal == SIGINT ? "INT" : "TERM")"])
            break
        }
        daemon.stop()
    }
}

/// Delivers SIGTERM, SIGINT and SIGHUP as an async sequence instead of running their default actions,
/// so the daemon can drain on TERM/INT and reload on HUP. Dispatch sources see the signals on an
/// ordinary queue, where any code may run (a real signal handler may call almost nothing).
final class SignalEvents: @unchecked Sendable {
    // `sources` is written once in init and only kept alive afterwards.
    private var sources: [any DispatchSourceSignal] = []
    let events: AsyncStream<Int32>

    init(_ numbers: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(16))
        events = stream
        for number in numbers {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
    }
}
