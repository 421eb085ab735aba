import Afterimage
import ArgumentParser
import Foundation
import Glibc
import Logging

struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one reconciliation pass: record the Replicate predictions whose webhook never arrived.",
        discussion: """
            Pages through GET {replicate.base_url}/v1/predictions (newest first) and records every prediction \
            not already terminal here, queueing its outputs for the archive workers of a running daemon. \
            Progress goes to stderr, the summary to stdout.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "How far back to look: 90m, 2h, 1d, 1h30m or seconds (default: replicate.retention + replicate.reconcile_margin).")
    var since: String?

    func validate() throws {
        if let since, DurationText.seconds(since) == nil {
            throw ValidationError("--since must be a duration such as 90m, 2h or 1d (at most 365 days)")
        }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        // Per-prediction log lines would tear the progress line; only problems are logged unless asked for more.
        let configured = LogSetup.level(named: settings.logLevel) ?? .info
        LogSetup.bootstrap(level: configured <= .debug ? configured : max(configured, .warning))
        let logger = Logger(label: "afterimage")
        let reconciler = try runReportingErrors { () throws -> ReplicateReconciler in
            guard let token = settings.replicate.apiToken, !token.isEmpty else {
                throw ConfigurationError(key: "replicate.api_token", "is required to reconcile (environment AFTERIMAGE_REPLICATE_API_TOKEN)")
            }
            return try settings.makeReplicateReconciler(
                token: { token }, logger: logger,
                sleep: { seconds in
                    Thread.sleep(forTimeInterval: max(0, seconds))
                    return true
                },
                shouldAbort: { false })
        }
        let window = since.flatMap(DurationText.seconds) ?? (settings.replicate.retention + settings.replicate.reconcileMargin)
        let progress = ProgressLine()
        let outcome = try runReportingErrors {
            defer { progress.finish() }
            return try reconciler.runPass(createdAfter: Date().addingTimeInterval(-TimeInterval(window))) { summary in
                progress.show(
                    "reconcile: page \(summary.pages), \(summary.seen) predictions seen, \(summary.recorded) recorded, \(summary.assets) outputs queued"
                )
            }
        }
        switch outcome {
        case .lockHeld:
            printError("afterimage: another instance is reconciling this database right now; nothing done, try again later")
            throw ExitStatus.runtimeFailure
        case .completed(let s):
            for id in s.recordedIDs { print("recorded replicate/\(id)") }
            print(
                """
                pages: \(s.pages)
                predictions seen: \(s.seen) (created in the last \(window) s)
                already terminal here: \(s.alreadyTerminal)
                recorded: \(s.recorded)
                outputs queued: \(s.assets)
                already recorded by an earlier pass: \(s.duplicates)
                not understood: \(s.unparseable)
                kept raw (the database refused a value): \(s.rejected)
                created on the website, skipped (replicate.reconcile_web): \(s.web)
                stale predictions refreshed: \(s.refreshed)
                """)
        }
    }
}

/// One line on stderr rewritten in place on a terminal; one line per update when stderr is a file.
final class ProgressLine {
    private let isTerminal = isatty(2) == 1
    private var shown = false

    func show(_ text: String) {
        printRaw(isTerminal ? "\r\u{1B}[K" + text : text + "\n")
        shown = true
    }

    func finish() {
        if isTerminal, shown { printRaw("\n") }
    }

    private func printRaw(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
