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
        let logger = Logger(label: "afterimage")
        let daemon = try runReportingErrors { try Daemon(settings: settings, logger: logger) }
        try runReportingErrors { try daemon.start() }
        let signal = await TerminationSignal.wait()
        logger.info("signal received", metadata: ["signal": "\(signal)"])
        daemon.stop()
    }
}

/// Waits for SIGTERM or SIGINT. The default actions are replaced so the daemon can drain in-flight work.
enum TerminationSignal {
    static func wait() async -> String {
        await withCheckedContinuation { continuation in
            let fired = SignalOnce(continuation)
            for (number, name) in [(SIGTERM, "TERM"), (SIGINT, "INT")] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { fired.resume(name) }
                source.resume()
                fired.keep(source)
            }
        }
    }
}

/// Resumes the continuation once, whichever signal comes first, and keeps the sources alive meanwhile.
private final class SignalOnce: @unchecked Sendable {
    // Guarded by `lock`; touched from the signal sources' dispatch queue and the caller.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<String, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<String, Never>) { self.continuation = continuation }

    func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }

    func resume(_ name: String) {
        let pending = lock.withLock { () -> CheckedContinuation<String, Never>? in
            defer { continuation = nil }
            return continuation
        }
        pending?.resume(returning: name)
    }
}
