import Afterimage
import ArgumentParser
import Foundation

/// `afterimage presign PROVIDER ID`: the same URLs the API hands out, straight from the database and the
/// storage credentials (no daemon needed, no request to S3: signing is local).
struct Presign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print presigned GET URLs for a prediction's stored outputs, one per line in output order.",
        discussion: "Exits 1 when the prediction is unknown or a requested output is not stored (its state goes to stderr).")

    @OptionGroup var common: CommonOptions

    @Argument(help: "Provider, e.g. replicate.") var provider: String
    @Argument(help: "The provider's prediction id.") var predictionID: String
    @Option(name: .long, help: "Only output N (its index in walk order).") var output: Int?
    @Option(name: .long, help: "Lifetime in seconds (default storage.presign_ttl, at most 604800).") var expires: Int?
    @Option(name: .long, help: "File name the bucket should offer as a download (Content-Disposition).") var download: String?

    func validate() throws {
        if let expires, expires < 1 { throw ValidationError("--expires must be at least 1 second") }
        if let output, output < 0 { throw ValidationError("--output must not be negative") }
        if download != nil, output == nil { throw ValidationError("--download needs --output") }
        do { _ = try Presigner.validateDownloadName(download) } catch { throw ValidationError(error.message) }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let expires = min(self.expires ?? settings.storage.presignTTL, Presigner.maxTTL)
        let missing = try runReportingErrors { () throws -> Int in
            let presigner = try Presigner.make(settings.storage)
            let found = try LookupStore().withConnection(databaseURL: try settings.requireDatabaseURL()) { store, connection in
                try store.prediction(provider: provider, id: predictionID, on: connection)
            }
            guard let view = found else {
                throw LookupError(.predictionNotFound, "no prediction \(provider)/\(predictionID)")
            }
            var assets = view.assets
            if let output {
                assets = assets.filter { $0.index == output }
                if assets.isEmpty { throw LookupError(.outputNotFound, "prediction \(provider)/\(predictionID) has no output \(output)") }
            }
            var missing = 0
            for asset in assets {
                if asset.isStored, let key = asset.key {
                    print(presigner.sign(key: key, expires: expires, downloadName: download).url)
                } else {
                    missing += 1
                    let reason = asset.failureReason.map { ": \($0)" } ?? ""
                    printError("afterimage: output \(asset.index) is \(asset.state)\(reason)")
                }
            }
            return missing
        }
        if missing > 0 { throw ExitStatus.runtimeFailure }
    }
}
