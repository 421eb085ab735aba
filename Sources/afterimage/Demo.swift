import Afterimage
import ArgumentParser
import Foundation

/// `afterimage demo` (what `make demo` runs): one signed Replicate webhook to a running daemon, then the
/// lookup and a presigned URL, so a first run shows the whole path working.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a signed demo Replicate webhook to a running daemon; print the lookup and a presigned URL.",
        discussion: """
            Signs with the first replicate.webhook_secret and looks up with the first plain api.tokens entry of the \
            configuration, so give it the daemon's own --config. The output is a small PNG as a data: URI, decoded \
            by the daemon at intake: nothing is downloaded. Exits 1 with a message saying why when the daemon is not \
            running or the output is not stored within --timeout.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The daemon's base URL (default: http://{http.host}:{http.port} of the configuration).")
    var url: String?

    @Option(help: "Seconds to wait for the output to be stored.")
    var timeout: Int = 60

    func validate() throws {
        guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be between 1 and 3600 seconds") }
        if let url, URL(string: url)?.host == nil { throw ValidationError("--url must be a URL such as http://127.0.0.1:8080") }
    }

    func run() async throws {
        let settings = try await common.loadSettings()
        let demo = try runReportingErrors { () throws -> LocalDemo in
            guard let secret = settings.replicate.webhookSecrets.first else {
                throw ConfigurationError(key: "replicate.webhook_secret", "is needed to sign the demo webhook (make run makes one)")
            }
            guard let token = settings.api.tokens.first(where: { !$0.hasPrefix("sha256:") }) else {
                throw ConfigurationError(key: "api.tokens", "needs a plain token (not only sha256: ones) for the demo's lookup")
            }
            return LocalDemo(
                baseURL: url ?? LocalDemo.baseURL(for: settings.http), webhookSecret: secret, apiToken: token,
                timeout: .seconds(timeout))
        }
        let outcome = try runReportingErrors { () throws -> LocalDemo.Outcome in
            try demo.run { printError("demo: \($0)") }
        }
        let stored = Double(outcome.storedAfter.components.seconds) + Double(outcome.storedAfter.components.attoseconds) / 1e18
        let pretty =
            (try? JSONSerialization.jsonObject(with: Data(outcome.lookup)))
            .flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) }
            .map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: outcome.lookup, as: UTF8.self)
        print(
            """
            Stored in \(String(format: "%.1f", stored)) s. The lookup, GET \(demo.baseURL)/v1/predictions/replicate/\(outcome.predictionID):
            \(pretty)

            Presigned URL of output 0 (checked: 200, \(outcome.fetchedBytes) bytes, the PNG sent; valid until \(outcome.presignedURLExpiresAt ?? "storage.presign_ttl")):
            \(outcome.presignedURL)

            Fetch it:
              curl -o afterimage-demo.png '\(outcome.presignedURL)'
            """)
        if outcome.consoleAvailable {
            print("Console: \(demo.baseURL)/ui/ (sign in with an API token from api.tokens)")
        }
    }
}
