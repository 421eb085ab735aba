import Afterimage
import ArgumentParser
import Foundation
import Logging

/// Exit codes follow sysexits: 64 usage (argument-parser's own), 78 configuration, 1 runtime failure.
enum ExitStatus {
    static let runtimeFailure = ExitCode(1)
    static let configurationError = ExitCode(78)
}

@main
struct AfterimageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "afterimage",
        abstract: "Keeps image-generation outputs after the providers delete them.",
        subcommands: [
            Serve.self, Reload.self, Migrate.self, CheckConfig.self, Presign.self, Assets.self, Reconcile.self,
            ReplicateCommand.self, Demo.self,
        ])

    static func main() async {
        resetSignalMask()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "JSON configuration file (environment AFTERIMAGE_* and $CREDENTIALS_DIRECTORY override it).")
    var config: String?

    /// Loads settings, or prints the error naming the key and exits 78.
    func loadSettings() async throws -> Settings {
        do {
            return try await SettingsLoader.load(configFile: config)
        } catch {
            printError("afterimage: \(error)")
            throw ExitStatus.configurationError
        }
    }
}

/// One line on stderr; the userinfo of any URL in it is masked (an error may quote a configured URL).
func printError(_ message: String) {
    FileHandle.standardError.write(Data((URLRedaction.redactingUserInfo(message) + "\n").utf8))
}

/// Runs `body`, turning configuration errors into exit 78 and anything else into exit 1, with one clear line.
func runReportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConfigurationError {
        printError("afterimage: \(error)")
        throw ExitStatus.configurationError
    } catch let error as ExitCode {
        throw error
    } catch {
        printError("afterimage: \(error)")
        throw ExitStatus.runtimeFailure
    }
}
