import Afterimage
import ArgumentParser
import Logging

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations, each once, under an advisory lock.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let settings = try await common.loadSettings()
        LogSetup.bootstrap(level: LogSetup.level(named: settings.logLevel) ?? .info)
        let logger = Logger(label: "afterimage")
        let applied = try runReportingErrors {
            try Migrator().migrate(databaseURL: try settings.requireDatabaseURL(), logger: logger)
        }
        print(applied.isEmpty ? "schema is current" : "applied: " + applied.joined(separator: ", "))
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and print it, secrets redacted.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let settings = try await common.loadSettings()
        try runReportingErrors { try settings.validateForServe() }
        print(settings.redactedDescription())
    }
}
