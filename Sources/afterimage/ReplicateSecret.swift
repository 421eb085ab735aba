import Afterimage
import ArgumentParser
import Foundation

/// `afterimage replicate …`: Replicate account chores.
struct ReplicateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicate",
        abstract: "Replicate account chores.",
        subcommands: [ReplicateSecret.self])
}

/// `afterimage replicate secret`: fetches the account's webhook signing secret with `replicate.api_token`
/// and writes it where the daemon reads `replicate.webhook_secret`, without ever showing it (unless `--print`).
struct ReplicateSecret: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret",
        abstract: "Fetch the Replicate account's webhook signing secret into a credential file.",
        discussion: """
            Asks GET {replicate.base_url}/v1/webhooks/default/secret with replicate.api_token and writes the whsec_ \
            secret, mode 0600, to --output FILE, or by default to $CREDENTIALS_DIRECTORY/replicate-webhook_secret \
            (the file the daemon reads replicate.webhook_secret from). --print writes it to stdout instead. The \
            secret is never logged; restart the daemon to use a new one.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Credential file to write (default: $CREDENTIALS_DIRECTORY/replicate-webhook_secret).")
    var output: String?

    @Flag(name: .customLong("print"), help: "Write the secret to stdout instead of a file.")
    var printToStdout = false

    func validate() throws {
        if printToStdout, output != nil { throw ValidationError("--print and --output exclude each other") }
        if !printToStdout, output == nil, Self.credentialsDirectory == nil {
            throw ValidationError(
                """
                say where the secret goes: --output FILE (e.g. /etc/afterimage/credentials/replicate-webhook_secret), \
                CREDENTIALS_DIRECTORY=DIR, or --print
                """)
        }
    }

    static var credentialsDirectory: String? {
        ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let destination = printToStdout ? nil : output ?? Self.credentialsDirectory.map { $0 + "/replicate-webhook_secret" }
        let secret = try runReportingErrors { () throws -> String in
            guard let token = settings.replicate.apiToken, !token.isEmpty else {
                throw ConfigurationError(
                    key: "replicate.api_token", "is required to fetch the webhook secret (environment AFTERIMAGE_REPLICATE_API_TOKEN)")
            }
            let client = try ReplicateAPIClient(
                configuration: .init(baseURL: settings.replicate.baseURL, token: token),
                sleep: { seconds in
                    Thread.sleep(forTimeInterval: max(0, seconds))
                    return true
                })
            return try client.defaultWebhookSecret()
        }
        guard let destination else {
            print(secret)
            return
        }
        try runReportingErrors { try CredentialFile.write(secret, to: destination) }
        printError("afterimage: wrote Replicate's webhook signing secret to \(destination) (mode 0600); restart the daemon to use it")
    }
}
