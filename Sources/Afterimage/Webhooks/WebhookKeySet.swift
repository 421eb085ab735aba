import Crypto
import Curl
import Foundation
import Logging
import Synchronization

/// A provider's Ed25519 webhook keys: pinned in the configuration, or fetched from its JWKS and cached in
/// memory and on disk.
///
/// The rules, from the providers' own advice (refresh when a signature fails to verify, in case the keys
/// rotated; the key id is a hint, not a requirement):
/// - a signature is tried against the key the request names first, then every other cached key;
/// - when none verifies, the set is fetched again, at most once per `refetchInterval` (a flood of forged
///   requests costs one fetch a minute), and the signature tried once more;
/// - when no key can be had at all (nothing cached, the fetch failed), or the request names a key the set
///   does not hold and it cannot be fetched again yet, the answer is 503 + Retry-After, not 401: the
///   provider retries a 503, and a genuine delivery must never be refused for our want of keys;
/// - pinned keys are never fetched: a signature none of them verifies is refused.
///
/// The fetch goes through the download rules (`FetchPolicy`: allowed schemes, the private-address guard,
/// a size limit), with the JWKS URL's own host allowed. It never runs on an event thread: the route hands
/// undecided requests to its handler pool.
public final class WebhookKeySet: Sendable {
    public let provider: ProviderName
    let jwksURL: String
    let pinned: Bool
    /// Where the last fetched set is kept, so a restart while the JWKS is unreachable still verifies.
    let cacheFile: String?
    let policy: @Sendable () -> FetchPolicy
    let refetchInterval: Duration
    let fetchTimeout: Duration
    let logger: Logger

    private struct State {
        var keys: [JSONWebKeySet.Key]
        var lastAttempt: ContinuousClock.Instant?
        var lastAttemptFailed = false
    }
    private let state: Mutex<State>
    /// Serialises fetches: requests that need one at the same time wait for it and then use its keys.
    private let fetching = NSLock()

    /// `pinned`: base64url Ed25519 keys (`ideogram.public_keys`); when any are given nothing is fetched.
    /// `cacheFile`: the on-disk copy of the last fetched set, loaded now if present.
    public init(
        provider: ProviderName, jwksURL: String, pinned: [String] = [], cacheFile: String?,
        policy: @escaping @Sendable () -> FetchPolicy, refetchInterval: Duration = .seconds(60),
        fetchTimeout: Duration = .seconds(10), logger: Logger
    ) {
        self.provider = provider
        self.jwksURL = jwksURL
        self.cacheFile = cacheFile
        self.policy = policy
        self.refetchInterval = refetchInterval
        self.fetchTimeout = fetchTimeout
        self.logger = logger
        let pins = pinned.compactMap { JSONWebKeySet.publicKey(base64URL: $0) }.map { JSONWebKeySet.Key(id: nil, publicKey: $0) }
        self.pinned = !pins.isEmpty
        var keys = pins
        if pins.isEmpty, let cacheFile, let document = FileManager.default.contents(atPath: cacheFile) {
            do {
                keys = try JSONWebKeySet.keys(from: Array(document))
                logger.info("webhook keys loaded from the disk cache", metadata: ["provider": "\(provider)", "keys": "\(keys.count)"])
            } catch {
                logger.warning(
                    "webhook key cache unreadable; fetching afresh",
                    metadata: ["provider": "\(provider)", "file": "\(cacheFile)", "error": "\(error)"])
            }
        }
        state = Mutex(State(keys: keys))
    }

    /// What to do with a signature no cached key verified.
    enum Next: Equatable {
        /// Fetch the set again and try once more (on a handler pool thread).
        case refresh
        /// 503: no key can be had now; ask again after this many seconds.
        case unavailable(retryAfter: Int)
        /// 401.
        case refuse
    }

    /// Whether any cached key verifies `signature` over `message`: the named key first, then every other.
    func verify(_ signature: [UInt8], message: [UInt8], keyID: String?) -> Bool {
        let keys = state.withLock { $0.keys }
        for key in keys where keyID != nil && key.id == keyID {
            if key.publicKey.isValidSignature(signature, for: message) { return true }
        }
        for key in keys where keyID == nil || key.id != keyID {
            if key.publicKey.isValidSignature(signature, for: message) { return true }
        }
        return false
    }

    /// After no cached key verified a request naming `keyID` (nil when the provider names none).
    func next(afterFailureWith keyID: String?, now: ContinuousClock.Instant = .now) -> Next {
        if pinned { return .refuse }
        return state.withLock { state in
            if let retryAfter = Self.wait(state, refetchInterval, now) {
                // The set was fetched (or tried) a moment ago: a key it lacks may still be on its way.
                let knowsKey = keyID.map { id in state.keys.contains { $0.id == id } } ?? true
                return state.keys.isEmpty || !knowsKey ? .unavailable(retryAfter: retryAfter) : .refuse
            }
            return .refresh
        }
    }

    /// Seconds until the set may be fetched again; nil when it may be now.
    private static func wait(_ state: State, _ interval: Duration, _ now: ContinuousClock.Instant) -> Int? {
        guard let last = state.lastAttempt, now - last < interval else { return nil }
        let remaining = interval - (now - last)
        return max(1, Int((Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18).rounded(.up)))
    }

    /// Seconds a request should wait when no key is cached and none can be fetched yet (checked from the
    /// head, so such a request is answered 503 before its body is read); nil when keys are at hand or may
    /// be fetched.
    func unavailableBeforeBody(now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { state in state.keys.isEmpty ? Self.wait(state, refetchInterval, now) : nil }
    }

    enum Outcome: Equatable {
        case verified
        case refuse
        case unavailable(retryAfter: Int)
    }

    /// On a handler pool thread: fetches the set again when allowed (once per interval, whatever the number
    /// of requests waiting for it) and decides.
    func refreshAndVerify(_ signature: [UInt8], message: [UInt8], keyID: String?) -> Outcome {
        if verify(signature, message: message, keyID: keyID) { return .verified }
        fetching.lock()
        // Another request may have fetched while this one waited: then its keys decide.
        if next(afterFailureWith: keyID) == .refresh { refresh() }
        fetching.unlock()
        if verify(signature, message: message, keyID: keyID) { return .verified }
        return state.withLock { state in
            let knowsKey = keyID.map { id in state.keys.contains { $0.id == id } } ?? true
            let retryAfter = Self.wait(state, refetchInterval, .now) ?? 1
            if state.keys.isEmpty { return .unavailable(retryAfter: retryAfter) }
            // The set could not be fetched and does not hold the key named: it may be a new one.
            if !knowsKey && state.lastAttemptFailed { return .unavailable(retryAfter: retryAfter) }
            return .refuse
        }
    }

    /// Fetches the set and replaces the cached one (and the disk copy) when it holds keys. A failure keeps
    /// what is cached.
    private func refresh() {
        state.withLock { $0.lastAttempt = .now }
        do {
            let document = try fetchDocument()
            let keys = try JSONWebKeySet.keys(from: document)
            state.withLock {
                $0.keys = keys
                $0.lastAttemptFailed = false
            }
            logger.info(
                "webhook keys fetched",
                metadata: [
                    "provider": "\(provider)", "keys": "\(keys.count)",
                    "ids": "\(keys.compactMap(\.id).joined(separator: ","))",
                ])
            saveCache(document)
        } catch {
            state.withLock { $0.lastAttemptFailed = true }
            logger.error(
                "webhook keys could not be fetched; deliveries that need them are answered 503",
                metadata: ["provider": "\(provider)", "url": "\(jwksURL)", "error": "\(error)"])
        }
    }

    struct FetchFailure: Error, CustomStringConvertible {
        let description: String
    }

    private func fetchDocument() throws -> [UInt8] {
        let base = policy()
        guard let host = URL(string: jwksURL)?.host else { throw FetchFailure(description: "the JWKS URL has no host") }
        // The download rules, with the key set's own host allowed: it is configured, not sent by anyone.
        let policy = FetchPolicy(
            allowedHosts: base.allowedHosts + [host], allowedSchemes: base.allowedSchemes,
            allowPrivateNetworks: base.allowPrivateNetworks, maxBytes: Int64(JSONWebKeySet.maxBytes))
        if let refusal = policy.refusal(for: jwksURL) { throw FetchFailure(description: refusal) }
        var options = policy.curlOptions()
        options.totalTimeout = fetchTimeout
        options.connectTimeout = min(fetchTimeout, .seconds(5))
        let response = try CurlSession().perform(CurlRequest(url: jwksURL, headers: [("Accept", "application/json")]), options: options)
        guard response.status == 200 else { throw FetchFailure(description: "the JWKS URL answered \(response.status)") }
        return response.body
    }

    /// Written beside the spool, atomically (a reader never sees half a file), owner-only.
    private func saveCache(_ document: [UInt8]) {
        guard let cacheFile else { return }
        let directory = (cacheFile as NSString).deletingLastPathComponent
        let temporary = cacheFile + ".\(getpid()).tmp"
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            guard FileManager.default.createFile(atPath: temporary, contents: Data(document), attributes: [.posixPermissions: 0o600]),
                rename(temporary, cacheFile) == 0
            else {
                throw FetchFailure(description: String(cString: strerror(errno)))
            }
        } catch {
            unlink(temporary)
            logger.warning("webhook key cache not written", metadata: ["provider": "\(provider)", "file": "\(cacheFile)", "error": "\(error)"])
        }
    }

    /// How many keys are cached (for tests and logs).
    var count: Int { state.withLock { $0.keys.count } }
}

extension WebhookKeySet {
    /// The key set of a provider configured the usual way (`{provider}.jwks_url`, `{provider}.public_keys`):
    /// fetched with the download rules in force (read per fetch, so a reload reaches it) and cached as
    /// `{provider}.jwks.json` in the daemon's key directory.
    static func configured(
        for provider: ProviderName, jwksURL: String, publicKeys: [String],
        context: ProviderContext
    ) -> WebhookKeySet {
        let reloadable = context.reloadable
        return WebhookKeySet(
            provider: provider, jwksURL: jwksURL, pinned: publicKeys,
            cacheFile: context.keyCacheDirectory.map { "\($0)/\(provider.rawValue).jwks.json" },
            policy: { reloadable.fetchPolicy }, logger: context.logger)
    }
}
