import Afterimage
import Foundation
import TestSupport
import Testing

/// `afterimage replicate secret` against the fake Replicate API: the secret lands where the configuration
/// reads `replicate.webhook_secret`, mode 0600, and is never shown except with `--print`.
@Suite("afterimage replicate secret")
struct ReplicateSecretTests {
    let api: FakeReplicateAPI
    let directory: String

    init() throws {
        api = try FakeReplicateAPI()
        try api.load([])
        directory = NSTemporaryDirectory() + "afterimage-credentials-" + UUID().uuidString
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o700])
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }

    var secretFile: String { directory + "/replicate-webhook_secret" }

    func writeToken(_ token: String) throws {
        FileManager.default.createFile(
            atPath: directory + "/replicate-api_token", contents: Data(token.utf8),
            attributes: [.posixPermissions: 0o600])
    }

    func secretRequests() throws -> Int { try api.stats().secret ?? 0 }

    @Test("written to $CREDENTIALS_DIRECTORY/replicate-webhook_secret, 0600, and read back as replicate.webhook_secret")
    func credentialsDirectory() async throws {
        defer { cleanUp() }
        try writeToken(api.token)
        let (status, out, err) = try runAfterimage(
            ["replicate", "secret"],
            environment: [
                "CREDENTIALS_DIRECTORY": directory, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL,
            ])
        #expect(status == 0, "\(err)")
        #expect(try String(contentsOfFile: secretFile, encoding: .utf8) == api.webhookSecret)
        let mode = try FileManager.default.attributesOfItem(atPath: secretFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(err.contains(secretFile))
        for text in [out, err] {
            #expect(!text.contains(api.webhookSecret) && !text.contains(String(api.webhookSecret.dropFirst(6))), "the secret was shown")
            #expect(!text.contains(api.token), "the token was shown")
        }
        #expect(try secretRequests() == 1)
        // Where the daemon reads it: the same directory as $CREDENTIALS_DIRECTORY.
        let settings = try await SettingsLoader.load(configFile: nil, environment: ["CREDENTIALS_DIRECTORY": directory])
        #expect(settings.replicate.webhookSecrets == [api.webhookSecret])
        // No temporary file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["replicate-api_token", "replicate-webhook_secret"])
    }

    @Test("--output replaces an existing file; --print writes stdout only")
    func outputAndPrint() throws {
        defer { cleanUp() }
        FileManager.default.createFile(atPath: secretFile, contents: Data("whsec_b2xk".utf8), attributes: [.posixPermissions: 0o644])
        let environment = ["AFTERIMAGE_REPLICATE_API_TOKEN": api.token, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL]
        let (status, _, err) = try runAfterimage(["replicate", "secret", "--output", secretFile], environment: environment)
        #expect(status == 0, "\(err)")
        #expect(try String(contentsOfFile: secretFile, encoding: .utf8) == api.webhookSecret)
        #expect(try FileManager.default.attributesOfItem(atPath: secretFile)[.posixPermissions] as? Int == 0o600)

        let (printed, out, printErr) = try runAfterimage(["replicate", "secret", "--print"], environment: environment)
        #expect(printed == 0, "\(printErr)")
        #expect(out == api.webhookSecret + "\n")
        #expect(!printErr.contains(api.webhookSecret))
    }

    @Test("a refused token: exit 1 naming the endpoint and status, nothing written, the token not shown")
    func refusedToken() throws {
        defer { cleanUp() }
        let wrong = "r8_wrong_" + UUID().uuidString
        let (status, out, err) = try runAfterimage(
            ["replicate", "secret", "--output", secretFile],
            environment: [
                "AFTERIMAGE_REPLICATE_API_TOKEN": wrong, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL,
            ])
        #expect(status == 1)
        #expect(err.contains("/v1/webhooks/default/secret") && err.contains("401"), "\(err)")
        #expect(!err.contains(wrong) && !out.contains(wrong))
        #expect(!FileManager.default.fileExists(atPath: secretFile))
    }

    @Test("an answer that is not a whsec_ secret is refused, and not shown")
    func malformedAnswer() throws {
        defer { cleanUp() }
        try api.load([], script: ["webhook_secret": "not a secret!"])
        let (status, out, err) = try runAfterimage(
            ["replicate", "secret", "--output", secretFile],
            environment: [
                "AFTERIMAGE_REPLICATE_API_TOKEN": api.token, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL,
            ])
        #expect(status == 1)
        #expect(err.contains("whsec_"), "\(err)")
        #expect(!err.contains("not a secret!") && !out.contains("not a secret!"))
        #expect(!FileManager.default.fileExists(atPath: secretFile))
    }

    @Test("no token is a configuration error (78); no destination is a usage error (64)")
    func missingSettings() throws {
        defer { cleanUp() }
        let (noToken, _, tokenErr) = try runAfterimage(
            ["replicate", "secret", "--print"],
            environment: [
                "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL
            ])
        #expect(noToken == 78)
        #expect(tokenErr.contains("replicate.api_token"))
        let (noDestination, _, destinationErr) = try runAfterimage(
            ["replicate", "secret"],
            environment: [
                "AFTERIMAGE_REPLICATE_API_TOKEN": api.token, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL,
            ])
        #expect(noDestination == 64)
        #expect(destinationErr.contains("--output"))
        #expect(try secretRequests() == 0)
    }
}
