import Afterimage
import ArgumentParser
import Foundation
import Logging

/// `afterimage delete PROVIDER ID`: the same delete as `DELETE /v1/predictions/{provider}/{id}`, from the
/// command line, with the database and the bucket only (no daemon needed).
struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete a prediction's stored objects and raw bodies, keeping a tombstone.",
        discussion: """
            Marks the prediction deleted (input and output cleared, its outputs in state `deleted` with their \
            sizes and SHA-256 kept), replaces its raw delivery bodies by their SHA-256 and size, then removes \
            every object under its key prefix and aborts its unfinished multipart uploads. A transfer in flight \
            is fenced by its claim token. Spool files are left to the daemon's spool sweep (this command may \
            not reach the daemon's spool). Idempotent; exit 1 when the prediction is unknown.
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "Provider, e.g. replicate.") var provider: String
    @Argument(help: "The provider's prediction id.") var predictionID: String

    func run() async throws {
        let settings = try await common.loadSettings()
        LogSetup.bootstrap(level: LogSetup.level(named: settings.logLevel) ?? .info)
        let logger = Logger(label: "afterimage")
        let outcome = try runReportingErrors { () throws -> PredictionDeleter.Outcome in
            let deleter = PredictionDeleter(
                storage: try settings.storage.makeClient(), layout: StorageLayout(prefix: settings.storage.prefix),
                spool: nil, leaseSeconds: settings.workers.leaseSeconds, logger: logger)
            guard let outcome = try deleter.delete(provider: ProviderName(rawValue: provider), id: predictionID, settings: settings) else {
                throw LookupError(.predictionNotFound, "no prediction \(provider)/\(predictionID)")
            }
            return outcome
        }
        let what = outcome.alreadyDeleted && outcome.assets == 0 ? "was deleted already" : "deleted"
        print(
            "\(TerminalText.escaped(provider))/\(TerminalText.escaped(predictionID)) \(what): \(outcome.assets) outputs marked deleted, "
                + "\(outcome.objectsRemoved) objects removed, \(outcome.uploadsAborted) uploads aborted, \(outcome.bodiesCleared) raw bodies cleared")
        if outcome.purgePending {
            printError(
                "afterimage: some objects may remain (a transfer was in flight, or the bucket refused); the daemon's retention loop purges them")
        }
    }
}
