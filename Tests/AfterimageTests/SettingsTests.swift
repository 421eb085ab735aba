import Foundation
import Testing

@testable import Afterimage

@Suite("Configuration precedence, validation and redaction")
struct SettingsTests {
    /// A scratch folder holding an optional config file and an optional credentials directory.
    struct Scratch {
        let root: URL
        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("afterimage-settings-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        }
        func file(_ name: String, _ contents: String) throws -> String {
            let url = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try contents.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        var credentials: String { root.appendingPathComponent("credentials").path }
    }

    @Test func defaultsApplyWhenNothingIsSet() async throws {
        let settings = try await SettingsLoader.load(configFile: nil, environment: [:])
        #expect(settings.http.host == "127.0.0.1")
        #expect(settings.http.port == 8080)
        #expect(settings.http.maxBodyBytes == 16_777_216)
        #expect(settings.http.stabilityMaxBodyBytes == 67_108_864)
        #expect(settings.database.poolSize == 8)
        #expect(settings.storage.region == "us-east-1")
        #expect(settings.storage.pathStyle)
        #expect(settings.storage.presignTTL == 3600)
        #expect(settings.replicate.retention == 3600)
        #expect(
            settings.fetch.allowedHosts == [
                "replicate.delivery", "*.replicate.delivery", "api.stability.ai", "ideogram.ai",
                "fal.media", "*.fal.media",
            ])
        #expect(settings.ideogram.jwksURL == "https://api.ideogram.ai/v1/.well-known/jwks.json")
        #expect(settings.ideogram.retention == 86400 && settings.ideogram.publicKeys.isEmpty)
        #expect(settings.fal.jwksURL == "https://rest.alpha.fal.ai/.well-known/jwks.json")
        #expect(settings.fal.retention == 0, "fal files do not expire unless configured")
        #expect(settings.api.archiveTokens.isEmpty)
        // The key sets' API hosts are not download hosts (they are fetched with their own host allowed).
        #expect(FetchPolicy(settings.fetch).refusal(for: "https://api.ideogram.ai/v1/.well-known/jwks.json") != nil)
        #expect(FetchPolicy(settings.fetch).refusal(for: "https://v3.fal.media/files/b/x/output.png") == nil)
        #expect(settings.replicate.tokenHosts == ["replicate.delivery", "*.replicate.delivery"])
        #expect(!settings.replicate.reconcileWeb)
        // The API is the reconciler's (replicate.base_url), never a download: an output naming it is refused.
        #expect(FetchPolicy(settings.fetch).refusal(for: "https://api.replicate.com/v1/predictions") != nil)
        #expect(FetchPolicy(settings.fetch).refusal(for: "https://pbxt.replicate.delivery/x/out-0.png") == nil)
        #expect(settings.fetch.allowedSchemes == ["https"])
        #expect(!settings.fetch.allowPrivateNetworks)
        #expect(settings.fetch.maxBytes == 5_368_709_120)
        #expect(settings.workers.count == 8)
        #expect(settings.workers.spoolDirectory == "/var/lib/afterimage/spool")
        #expect(settings.database.url == nil)
    }

    @Test func environmentBeatsCredentialsBeatsFileBeatsDefaults() async throws {
        let scratch = try Scratch()
        let config = try scratch.file(
            "config.json",
            """
            {"http": {"port": 9001, "host": "127.0.0.2"},
             "database": {"url": "postgresql://file@127.0.0.1/db", "pool_size": 3},
             "storage": {"bucket": "from-file", "secret_access_key": "file-secret"}}
            """)
        _ = try scratch.file("credentials/storage-secret_access_key", "credential-secret\n")
        _ = try scratch.file("credentials/database-url", "postgresql://cred@127.0.0.1/db")
        let settings = try await SettingsLoader.load(
            configFile: config,
            environment: [
                "AFTERIMAGE_HTTP_PORT": "9002",
                "AFTERIMAGE_DATABASE_URL": "postgresql://env@127.0.0.1/db",
                "CREDENTIALS_DIRECTORY": scratch.credentials,
                "HTTP_PORT": "1",  // not ours: ignored
            ])
        #expect(settings.http.port == 9002)  // environment
        #expect(settings.database.url == "postgresql://env@127.0.0.1/db")  // environment over credentials
        #expect(settings.storage.secretAccessKey == "credential-secret")  // credentials over file, trimmed
        #expect(settings.storage.bucket == "from-file")  // file
        #expect(settings.http.host == "127.0.0.2")  // file
        #expect(settings.database.poolSize == 3)  // file
        #expect(settings.workers.count == 8)  // default
    }

    @Test func listsAreArraysInFilesAndSeparatedStringsInTheEnvironment() async throws {
        let scratch = try Scratch()
        let config = try scratch.file("c.json", #"{"fetch": {"allowed_hosts": ["a.example", "*.b.example"]}}"#)
        let fromFile = try await SettingsLoader.load(configFile: config, environment: [:])
        #expect(fromFile.fetch.allowedHosts == ["a.example", "*.b.example"])

        let secretA = "whsec_" + Data("first-secret".utf8).base64EncodedString()
        let secretB = "whsec_" + Data("second-secret".utf8).base64EncodedString()
        let fromEnv = try await SettingsLoader.load(
            configFile: config,
            environment: [
                "AFTERIMAGE_FETCH_ALLOWED_HOSTS": "c.example, d.example",
                "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": "\(secretA) \(secretB)",
                "AFTERIMAGE_FETCH_ALLOWED_SCHEMES": "https,http",
            ])
        #expect(fromEnv.fetch.allowedHosts == ["c.example", "d.example"])
        #expect(fromEnv.replicate.webhookSecrets == [secretA, secretB])
        #expect(fromEnv.fetch.allowedSchemes == ["https", "http"])
    }

    @Test func tokenHostsAndReconcileWeb() async throws {
        let settings = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_REPLICATE_TOKEN_HOSTS": "files.example.com *.cdn.example.com",
                "AFTERIMAGE_REPLICATE_RECONCILE_WEB": "true",
                "AFTERIMAGE_REPLICATE_API_TOKEN": "r8_secret",
            ])
        #expect(settings.replicate.tokenHosts == ["files.example.com", "*.cdn.example.com"])
        #expect(settings.replicate.reconcileWeb)
        #expect(settings.sourceCredential(for: "replicate")?.headers(for: "a.cdn.example.com").count == 1)
        #expect(settings.sourceCredential(for: "replicate")?.headers(for: "replicate.delivery").isEmpty == true)
        #expect(settings.sourceCredential(for: "stability") == nil)
        for bad in ["*", "https://replicate.delivery", "replicate.delivery/path", "*.", "a..b"] {
            do {
                _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_REPLICATE_TOKEN_HOSTS": bad])
                Issue.record("\(bad) was accepted as a token host")
            } catch {
                #expect(error.key == "replicate.token_hosts")
            }
        }
        // Reloadable, with the token itself.
        let reloadable = ReloadableSettings(try await SettingsLoader.load(configFile: nil, environment: [:]))
        let ignored = reloadable.apply(settings)
        #expect(!ignored.contains("replicate.token_hosts") && !ignored.contains("replicate.api_token"))
        #expect(reloadable.current.replicate.tokenHosts == ["files.example.com", "*.cdn.example.com"])
    }

    /// api.lookup_cache_bytes bounds the lookup cache (issue 17): 16 MiB by default, any size from 0 (off).
    @Test func lookupCacheBytes() async throws {
        #expect(try await SettingsLoader.load(configFile: nil, environment: [:]).api.lookupCacheBytes == 16_777_216)
        let set = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_API_LOOKUP_CACHE_BYTES": "1048576"])
        #expect(set.api.lookupCacheBytes == 1_048_576)
        #expect(set.redactedDescription().contains("api.lookup_cache_bytes = 1048576"))
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_API_LOOKUP_CACHE_BYTES": "-1"])
            Issue.record("a negative cache size was accepted")
        } catch {
            #expect(error.key == "api.lookup_cache_bytes")
        }
    }

    @Test func missingDatabaseURLNamesTheKey() async throws {
        let settings = try await SettingsLoader.load(configFile: nil, environment: [:])
        let error = #expect(throws: ConfigurationError.self) { try settings.requireDatabaseURL() }
        #expect(error?.key == "database.url")
        #expect(error?.description.contains("database.url") == true)
    }

    @Test func wrongTypesAndRangesNameTheKey() async throws {
        let scratch = try Scratch()
        let badType = try scratch.file("t.json", #"{"http": {"port": "eighty"}}"#)
        await #expect(throws: ConfigurationError.self) {
            try await SettingsLoader.load(configFile: badType, environment: [:])
        }
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_STORAGE_PRESIGN_TTL": "999999"])
            Issue.record("a presign TTL over 604800 was accepted")
        } catch {
            #expect(error.key == "storage.presign_ttl")
        }
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_FETCH_ALLOWED_SCHEMES": "ftp"])
            Issue.record("ftp was accepted as a fetch scheme")
        } catch {
            #expect(error.key == "fetch.allowed_schemes")
        }
    }

    @Test func providerKeysAndArchiveTokens() async throws {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        let settings = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_IDEOGRAM_PUBLIC_KEYS": "\(x) \(x)=", "AFTERIMAGE_IDEOGRAM_RETENTION": "3600",
                "AFTERIMAGE_FAL_JWKS_URL": "http://127.0.0.1:9/jwks.json", "AFTERIMAGE_FAL_RETENTION": "604800",
                "AFTERIMAGE_API_ARCHIVE_TOKENS": "tok_a sha256:" + String(repeating: "ab", count: 32),
            ])
        #expect(settings.ideogram.publicKeys == [x, x + "="])
        #expect(settings.ideogram.retention == 3600)
        #expect(settings.fal.jwksURL == "http://127.0.0.1:9/jwks.json" && settings.fal.retention == 604800)
        #expect(settings.api.archiveTokens.count == 2)
        #expect(settings.redactedDescription().contains("api.archive_tokens = (2 set, redacted)"))
        #expect(!settings.redactedDescription().contains("tok_a"))
        for (variable, value, key) in [
            ("AFTERIMAGE_IDEOGRAM_PUBLIC_KEYS", "not-a-key", "ideogram.public_keys"),
            ("AFTERIMAGE_FAL_JWKS_URL", "ftp://x/jwks", "fal.jwks_url"),
            ("AFTERIMAGE_API_ARCHIVE_TOKENS", "sha256:xyz", "api.archive_tokens"),
            ("AFTERIMAGE_FAL_RETENTION", "-1", "fal.retention"),
        ] {
            do {
                _ = try await SettingsLoader.load(configFile: nil, environment: [variable: value])
                Issue.record("\(variable)=\(value) was accepted")
            } catch {
                #expect(error.key == key)
            }
        }
    }

    @Test func malformedWebhookSecretIsRefusedWithoutEchoingIt() async throws {
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": "whsec_!!not-base64!!"])
            Issue.record("a malformed secret was accepted")
        } catch {
            #expect(error.key == "replicate.webhook_secret")
            #expect(!error.description.contains("not-base64"))
        }
    }

    @Test func missingOrMalformedConfigFileIsAConfigurationError() async throws {
        let scratch = try Scratch()
        await #expect(throws: ConfigurationError.self) {
            try await SettingsLoader.load(configFile: scratch.root.appendingPathComponent("nope.json").path, environment: [:])
        }
        let broken = try scratch.file("broken.json", "{ not json")
        await #expect(throws: ConfigurationError.self) {
            try await SettingsLoader.load(configFile: broken, environment: [:])
        }
    }

    @Test func redactedDescriptionShowsNoSecret() async throws {
        let secret = "whsec_" + Data("very-secret-value".utf8).base64EncodedString()
        let settings = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_DATABASE_URL": "postgresql://user:hunter2@127.0.0.1/db",
                "AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY": "s3-secret-key-value",
                "AFTERIMAGE_STORAGE_ACCESS_KEY_ID": "AKIDVALUE",
                "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": secret,
                "AFTERIMAGE_API_TOKENS": "token-one token-two",
                "AFTERIMAGE_STORAGE_BUCKET": "visible-bucket",
            ])
        let text = settings.redactedDescription()
        for leaked in ["hunter2", "s3-secret-key-value", "AKIDVALUE", secret, "token-one", "token-two"] {
            #expect(!text.contains(leaked), "\(leaked) leaked into check-config output")
        }
        #expect(text.contains("storage.bucket = \"visible-bucket\""))
        #expect(text.contains("api.tokens = (2 set, redacted)"))
        for (key, _) in SettingsLoader.keys {
            #expect(text.contains("\(key) = "), "check-config does not print \(key)")
        }
    }

    @Test func stabilityApiKeyIsAListInEveryFormAndOneKeyStillWorks() async throws {
        let scratch = try Scratch()
        let config = try scratch.file("k.json", #"{"stability": {"api_key": ["sk-file-1", "sk-file-2"]}}"#)
        #expect(try await SettingsLoader.load(configFile: config, environment: [:]).stability.apiKeys == ["sk-file-1", "sk-file-2"])
        let single = try scratch.file("one.json", #"{"stability": {"api_key": "sk-only"}}"#)
        #expect(try await SettingsLoader.load(configFile: single, environment: [:]).stability.apiKeys == ["sk-only"])
        let fromEnv = try await SettingsLoader.load(configFile: config, environment: ["AFTERIMAGE_STABILITY_API_KEY": "sk-env-1, sk-env-2 sk-env-1"])
        #expect(fromEnv.stability.apiKeys == ["sk-env-1", "sk-env-2"])  // repeats dropped
        _ = try scratch.file("credentials/stability-api_key", "sk-cred-1 sk-cred-2\n")
        let fromCredentials = try await SettingsLoader.load(configFile: config, environment: ["CREDENTIALS_DIRECTORY": scratch.credentials])
        #expect(fromCredentials.stability.apiKeys == ["sk-cred-1", "sk-cred-2"])
        #expect(try await SettingsLoader.load(configFile: nil, environment: [:]).stability.apiKeys.isEmpty)

        // check-config says how many, never which.
        let text = fromCredentials.redactedDescription()
        #expect(text.contains("stability.api_key = (2 set, redacted)"))
        #expect(!text.contains("sk-cred"))
    }
}
