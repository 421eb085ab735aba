import Afterimage
import ArgumentParser
import Foundation

/// `afterimage export`: every prediction as one JSON line on stdout, in constant memory; progress on stderr.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one JSON line per prediction (metadata, outputs with key, size, sha256, content type) to stdout.",
        discussion: """
            Predictions are read in pages in (provider, id) order and written as they are read, so memory stays \
            flat whatever the archive's size. Dates are RFC 3339, a day (2026-11-01, UTC) or a duration back from \
            now (30d, 12h). Progress goes to stderr.
            """)

    @OptionGroup var common: CommonOptions
    @Option(help: "Only predictions created at or after this date.") var since: String?
    @Option(help: "Only predictions created before this date.") var until: String?
    @Option(help: "Only this provider.") var provider: String?
    @Option(help: "Add a presigned URL valid this many seconds (at most 604800) to each stored output.") var presign: Int?

    func validate() throws {
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, DateArgument.parse(value) == nil {
                throw ValidationError("\(name) must be an RFC 3339 time, a day (2026-11-01) or a duration such as 30d")
            }
        }
        if let presign, !(1...604_800).contains(presign) { throw ValidationError("--presign must be 1...604800 seconds") }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let filter = Exporter.Filter(
            since: since.flatMap { DateArgument.parse($0) }, until: until.flatMap { DateArgument.parse($0) },
            provider: provider, presignSeconds: presign)
        let progress = ProgressLine()
        let out = FileHandle.standardOutput
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        var lastShown = Date.distantPast
        let count = try runReportingErrors { () throws -> Int in
            let presigner = presign == nil ? nil : try Presigner.make(settings.storage)
            defer { progress.finish() }
            return try Exporter(presigner: presigner).run(
                filter, settings: settings,
                write: { line in
                    buffer.append(contentsOf: line)
                    if buffer.count >= 1 << 16 {
                        try out.write(contentsOf: buffer)
                        buffer.removeAll(keepingCapacity: true)
                    }
                },
                progress: { count in
                    if Date().timeIntervalSince(lastShown) >= 1 {
                        lastShown = Date()
                        progress.show("export: \(count) predictions")
                    }
                },
                finish: {
                    try out.write(contentsOf: buffer)
                    buffer.removeAll()
                })
        }
        printError("export: \(count) predictions written")
    }
}
