import Foundation
import ReadMostly
import Synchronization

/// The settings that `SIGHUP` may change while the daemon runs: webhook secrets, API tokens (the
/// lookup API's bearer tokens and the providers' API tokens), the log level and the fetch limits.
/// Everything else (addresses, the database, the bucket, worker counts) is fixed at start, because
/// changing it means reopening listeners or pools: that is a restart.
///
/// Readers take a snapshot per request or per job (`current`, `replicateVerifier`, `fetchPolicy`,
/// `apiTokens`), so a reload never changes the rules in the middle of one.
public final class ReloadableSettings: Sendable {
    /// What readers see; derived values are built once per reload, not per request.
    public struct Snapshot: Sendable {
        public let settings: Settings
        public let replicateVerifier: StandardWebhooksVerifier
        public let stabilityVerifier: StandardWebhooksVerifier
        public let fetchPolicy: FetchPolicy
        /// The lookup API's tokens, hashed once per reload.
        public let apiAuthenticator: BearerAuthenticator
        /// The tokens that may queue URLs (`POST /v1/archives`).
        public let archiveAuthenticator: BearerAuthenticator

        init(_ settings: Settings) {
            self.settings = settings
            replicateVerifier = StandardWebhooksVerifier(secrets: settings.replicate.webhookSecrets)
            stabilityVerifier = StandardWebhooksVerifier(secrets: settings.stability.webhookSecrets)
            fetchPolicy = FetchPolicy(settings.fetch)
            apiAuthenticator = BearerAuthenticator(tokens: settings.api.tokens)
            archiveAuthenticator = BearerAuthenticator(tokens: settings.api.archiveTokens)
        }
    }

    /// Keys whose new values take effect on reload; `apply` reports changes to any other key.
    public static let reloadableKeys: Set<String> = [
        "replicate.webhook_secret", "stability.webhook_secret", "api.tokens", "api.archive_tokens", "replicate.api_token",
        "stability.api_key", "replicate.token_hosts", "log.level", "fetch.allowed_hosts", "fetch.allowed_schemes",
        "fetch.allow_private_networks", "fetch.max_bytes",
    ]

    /// Boxed so that a reader takes one reference under a shared read lock: every lookup and webhook reads
    /// this from many threads at once, and under a mutex it was a point of contention (bench/lookup).
    private final class Box: Sendable {
        let snapshot: Snapshot
        init(_ snapshot: Snapshot) { self.snapshot = snapshot }
    }

    private let state: ReadMostly<Box>
    /// Serialises reloads (read, merge, replace), which are rare.
    private let applying = Mutex(())

    public init(_ settings: Settings) {
        state = ReadMostly(Box(Snapshot(settings)))
    }

    private var box: Box { state.read() }
    public var snapshot: Snapshot { box.snapshot }
    /// The effective settings (start-up values for fixed keys, latest reload for reloadable ones).
    public var current: Settings { box.snapshot.settings }
    public var replicateVerifier: StandardWebhooksVerifier { box.snapshot.replicateVerifier }
    public var stabilityVerifier: StandardWebhooksVerifier { box.snapshot.stabilityVerifier }
    public var fetchPolicy: FetchPolicy { box.snapshot.fetchPolicy }
    public var apiAuthenticator: BearerAuthenticator { box.snapshot.apiAuthenticator }
    public var archiveAuthenticator: BearerAuthenticator { box.snapshot.archiveAuthenticator }
    /// `api.tokens` entries, plain or `sha256:<hex>`; compare in constant time.
    public var apiTokens: [String] { box.snapshot.settings.api.tokens }

    /// Takes the reloadable parts of `new` and keeps everything else as it was. Returns the keys
    /// whose value changed in `new` but cannot change without a restart (so the operator is told).
    /// `new` must already be validated: a configuration that does not load is never applied.
    @discardableResult
    public func apply(_ new: Settings) -> [String] {
        applying.withLock { _ in
            let box = state.read()
            var merged = box.snapshot.settings
            merged.replicate.webhookSecrets = new.replicate.webhookSecrets
            merged.stability.webhookSecrets = new.stability.webhookSecrets
            merged.api.tokens = new.api.tokens
            merged.api.archiveTokens = new.api.archiveTokens
            merged.replicate.apiToken = new.replicate.apiToken
            merged.replicate.tokenHosts = new.replicate.tokenHosts
            merged.stability.apiKeys = new.stability.apiKeys
            merged.logLevel = new.logLevel
            merged.fetch = new.fetch
            let ignored = Self.changedKeys(box.snapshot.settings, new).filter { !Self.reloadableKeys.contains($0) }
            state.replace(with: Box(Snapshot(merged)))
            return ignored
        }
    }

    /// Keys whose printed (redacted) value differs. A secret shows only whether it is set, so a changed
    /// database password is not reported; that is the price of never comparing secrets in the clear here.
    static func changedKeys(_ old: Settings, _ new: Settings) -> [String] {
        func lines(_ s: Settings) -> [String: String] {
            var out: [String: String] = [:]
            for line in s.redactedDescription().split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { out[parts[0].trimmingCharacters(in: .whitespaces)] = String(parts[1]) }
            }
            return out
        }
        let before = lines(old)
        let after = lines(new)
        return SettingsLoader.keys.map(\.key).filter { before[$0] != after[$0] }
    }
}
