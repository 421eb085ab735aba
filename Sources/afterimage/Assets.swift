import Afterimage
import ArgumentParser
import Foundation

/// `afterimage assets list|retry`: the archive queue for operators, straight from the database.
struct Assets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect the archive queue and re-queue failed outputs.",
        subcommands: [AssetsList.self, AssetsRetry.self])
}

struct AssetsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List assets in id order: id, state, provider/prediction, output index, attempts, size, key or reason.")

    @OptionGroup var common: CommonOptions
    @Option(name: .long, help: "Only this state: pending, in_flight, stored, failed or expired.") var state: String?
    @Option(name: .long, help: "Only this provider.") var provider: String?
    @Option(name: .long, help: "At most this many rows (1...1000).") var limit: Int = LookupStore.defaultPageSize
    @Option(name: .long, help: "Start after this asset id (the value printed for the next page).") var after: Int64 = 0

    func validate() throws {
        if let state, !LookupStore.states.contains(state) {
            throw ValidationError("--state must be one of pending, in_flight, stored, failed, expired")
        }
        guard (1...LookupStore.maxPageSize).contains(limit) else { throw ValidationError("--limit must be 1...\(LookupStore.maxPageSize)") }
        guard after >= 0 else { throw ValidationError("--after must not be negative") }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let page = try runReportingErrors { () throws -> AssetPage in
            try LookupStore().withConnection(databaseURL: try settings.requireDatabaseURL()) { store, connection in
                try store.assets(.init(state: state, provider: provider, after: after, limit: limit), on: connection)
            }
        }
        for asset in page.assets {
            let size = asset.size.map(String.init) ?? "-"
            let detail = asset.key ?? asset.failureReason.map(URLRedaction.redactingUserInfo) ?? "-"
            // Every text field escaped: they came from outside, and one line per asset must stay one line.
            print(
                [
                    String(asset.id), asset.state.rawValue, "\(asset.provider)/\(asset.predictionID)", String(asset.index),
                    String(asset.attempts), size, detail,
                ].map(TerminalText.escaped).joined(separator: "\t"))
        }
        if let next = page.nextAfter { printError("more: --after \(next)") }
    }
}

struct AssetsRetry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Put a failed or expired asset back in the queue (tries reset, due now) and wake the workers.")

    @OptionGroup var common: CommonOptions
    @Argument(help: "The asset id (see `assets list`).") var id: Int64

    func run() async throws {
        let settings = try await common.loadSettings()
        let asset = try runReportingErrors { () throws -> AssetView in
            try LookupStore().withConnection(databaseURL: try settings.requireDatabaseURL()) { store, connection in
                try store.retry(assetID: id, on: connection)
            }
        }
        print("asset \(asset.id) (\(asset.provider)/\(asset.predictionID) output \(asset.index)) is pending again")
    }
}
