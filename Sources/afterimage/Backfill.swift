import Afterimage
import ArgumentParser
import Foundation
import Glibc
import Logging

/// `afterimage backfill --since 30d`: archives the existing history of a Replicate account.
struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record a Replicate account's existing predictions over a date range and queue their outputs.",
        discussion: """
            Pages through GET {replicate.base_url}/v1/predictions back to --since (a date, a day or a duration \
            such as 30d) and records every prediction as reconciliation does; a running daemon's workers \
            download the outputs that still exist (the others end `expired`, with the source's answer). The \
            position is kept in the database after every page: --resume continues the latest unfinished run. \
            Progress on stderr: a bar on a terminal, a line every 10 s otherwise.
            """)

    @OptionGroup var common: CommonOptions
    @Option(help: "How far back: an RFC 3339 time, a day (2026-11-01) or a duration (30d, 12h).") var since: String?
    @Option(help: "Only predictions created before this date (default: now).") var until: String?
    @Flag(name: .customLong("include-web"), help: "Also predictions made on replicate.com's website.") var includeWeb = false
    @Flag(help: "Continue the latest unfinished backfill from the last page recorded.") var resume = false

    func validate() throws {
        if resume, since != nil || until != nil || includeWeb {
            throw ValidationError("--resume continues a run with its own range: give no --since, --until or --include-web")
        }
        if !resume, since == nil { throw ValidationError("--since is required (or --resume)") }
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, DateArgument.parse(value) == nil {
                throw ValidationError("\(name) must be an RFC 3339 time, a day (2026-11-01) or a duration such as 30d")
            }
        }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let configured = LogSetup.level(named: settings.logLevel) ?? .info
        LogSetup.bootstrap(level: configured <= .debug ? configured : max(configured, .warning))
        let logger = Logger(label: "afterimage")
        let start: ReplicateBackfill.Start =
            resume
            ? .resume
            : .fresh(since: DateArgument.parse(since!)!, until: until.flatMap { DateArgument.parse($0) }, includeWeb: includeWeb)
        let reporter = BackfillProgress()
        let result = try runReportingErrors { () throws -> ReplicateBackfill.Progress in
            guard let token = settings.replicate.apiToken, !token.isEmpty else {
                throw ConfigurationError(key: "replicate.api_token", "is required to backfill (environment AFTERIMAGE_REPLICATE_API_TOKEN)")
            }
            let reconciler = try settings.makeReplicateReconciler(
                token: { token }, logger: logger,
                sleep: { seconds in
                    Thread.sleep(forTimeInterval: max(0, seconds))
                    return true
                }, shouldAbort: { false })
            defer { reporter.finish() }
            return try ReplicateBackfill(reconciler: reconciler, logger: logger).run(start) { reporter.show($0) }
        }
        let s = result.summary
        print(
            """
            run: \(result.runID)\(result.resumed ? " (resumed)" : "")
            pages: \(result.pages)
            predictions seen: \(result.seen)
            recorded: \(result.recorded)
            outputs queued: \(s.assets)
            already terminal here: \(s.alreadyTerminal)
            created on the website, skipped: \(s.web)
            """)
    }
}

/// The backfill's progress on stderr: on a terminal one line redrawn in place with counts, pages, rate and
/// an ETA from how much of the date range the walk has covered (the list is newest first); otherwise a
/// plain line at most every 10 seconds, for logs.
final class BackfillProgress {
    private let isTerminal = isatty(2) == 1
    private let started = Date()
    private var lastLine = Date.distantPast
    private var shown = false

    func show(_ progress: ReplicateBackfill.Progress) {
        let now = Date()
        let elapsed = max(0.001, now.timeIntervalSince(started))
        let rate = Double(progress.sessionSeen) / elapsed
        let top = progress.until ?? started
        let span = top.timeIntervalSince(progress.since)
        let covered = progress.finished ? 1 : progress.reached.map { min(1, max(0, top.timeIntervalSince($0) / max(1, span))) } ?? 0
        var eta = "?"
        if covered > 0, !progress.finished { eta = Self.duration(elapsed * (1 - covered) / covered) }
        let counts = "\(progress.seen) predictions, \(progress.recorded) recorded, page \(progress.pages), \(String(format: "%.1f", rate))/s"
        if isTerminal {
            let width = 20
            let filled = Int(covered * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(Int(covered * 100))% \(counts), ETA \(eta)".utf8))
            shown = true
        } else if now.timeIntervalSince(lastLine) >= 10 || progress.finished {
            lastLine = now
            FileHandle.standardError.write(Data("backfill: \(Int(covered * 100))% of the range, \(counts), ETA \(eta)\n".utf8))
        }
    }

    func finish() {
        if isTerminal, shown { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
