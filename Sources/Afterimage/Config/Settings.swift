import Foundation

/// The daemon's effective configuration, resolved once from all sources (see `SettingsLoader`).
/// Plain values so the rest of the program never touches the configuration library.
public struct Settings: Sendable {
    public struct HTTP: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// The Replicate webhook route's limit: training and long predictions carry megabytes of `logs`,
        /// and a 413 to a genuine webhook loses it (Replicate retries for about a minute, then gives up).
        public var maxBodyBytes = 16 << 20
        /// Stability inline results carry base64 images and videos, hence a larger default.
        public var stabilityMaxBodyBytes = 67_108_864
        public var connectionLimit = 256
        /// Seconds a connection may stay idle.
        public var connectionTimeoutSeconds = 30
        /// Seconds in which a request's head must be complete (slow senders are closed).
        public var headerTimeoutSeconds = 10
        /// Seconds in which a whole request, head and body, must be in.
        public var requestTimeoutSeconds = 30
        /// Connections from one client address at once; 0 is no limit. Behind a proxy every client has the
        /// proxy's address, so there it must stay 0.
        public var perIPConnectionLimit = 0
        /// Request body bytes held at once across all connections; past it requests get 503 + Retry-After.
        public var maxInflightBodyBytes = 256 << 20
        /// A webhook whose delivery is not committed within this many seconds is answered 503 + Retry-After.
        public var intakeTimeoutSeconds = 10
    }

    public struct Database: Sendable {
        /// libpq URI; may hold a password, so it is treated as a secret everywhere it is printed.
        public var url: String?
        public var poolSize = 8
        public var migrate = true
        public var acquireTimeoutMilliseconds = 2000
        /// Session deadlines (see `PQ.SessionLimits`); 0 leaves the server's setting.
        public var statementTimeoutMilliseconds = 30_000
        public var lockTimeoutMilliseconds = 5_000
        public var idleInTransactionTimeoutMilliseconds = 60_000
        public var tcpUserTimeoutMilliseconds = 30_000
        public var keepalivesIdleSeconds = 30
        public var keepalivesIntervalSeconds = 10
        public var keepalivesCount = 3
    }

    public struct Storage: Sendable {
        public var endpoint: String?
        public var region = "us-east-1"
        public var bucket: String?
        public var accessKeyID: String?
        public var secretAccessKey: String?
        public var pathStyle = true
        public var prefix = ""
        public var presignTTL = 3600
        /// Files up to this size go up in one PUT; larger ones in parts (S3's minimum part is 5 MiB).
        public var multipartThreshold: Int64 = 64 << 20
        public var partSize: Int64 = 8 << 20
    }

    public struct Replicate: Sendable {
        /// Several at once during a rotation; any may verify a delivery.
        public var webhookSecrets: [String] = []
        public var apiToken: String?
        public var retention = 3600
        public var baseURL = "https://api.replicate.com"
        /// Seconds between reconciliation passes (needs `apiToken`); 0 turns reconciliation off.
        public var reconcileInterval = 60
        /// Added to `retention` for the window a pass covers: a prediction completes after it is created.
        public var reconcileMargin = 600
        /// A prediction non-terminal here and unchanged this long is fetched on its own by the reconciler.
        public var reconcileStaleAfter = 900
        /// The only hosts `apiToken` is sent to when downloading outputs (Replicate serves output files from
        /// replicate.delivery and its subdomains); every other host, redirect targets included, gets none.
        public var tokenHosts = ["replicate.delivery", "*.replicate.delivery"]
        /// Whether reconciliation also records predictions created on the website (`source: "web"`): Replicate
        /// keeps those indefinitely, so they are not at risk, and an account's web playground runs may be many.
        public var reconcileWeb = false
    }

    public struct Stability: Sendable {
        public var webhookSecrets: [String] = []
        /// Every key async results may have been created with: a result can be read only with its own key.
        public var apiKeys: [String] = []
        public var baseURL = "https://api.stability.ai"
    }

    public struct Ideogram: Sendable {
        /// Ideogram's published webhook keys (JWKS), fetched through the download rules.
        public var jwksURL = "https://api.ideogram.ai/v1/.well-known/jwks.json"
        /// Base64url Ed25519 keys that replace the JWKS: with any set, nothing is fetched.
        public var publicKeys: [String] = []
        /// Ideogram's result links expire 24 hours after the generation was created.
        public var retention = 86400
    }

    public struct Fal: Sendable {
        public var jwksURL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
        public var publicKeys: [String] = []
        /// fal's files do not expire by default: 0 gives its assets no deadline (claimed after every asset
        /// that has one); a number of seconds gives them one after the delivery.
        public var retention = 0
    }

    public struct Fetch: Sendable {
        /// Not api.replicate.com: the API is reached by the reconciler through `replicate.base_url`, never by
        /// a download, so an output string pointing at it is refused rather than fetched. The providers' key
        /// sets (JWKS) are fetched with their own host allowed, so their API hosts need not be here either.
        public var allowedHosts = [
            "replicate.delivery", "*.replicate.delivery", "api.stability.ai", "ideogram.ai",
            "fal.media", "*.fal.media",
        ]
        public var allowedSchemes = ["https"]
        public var allowPrivateNetworks = false
        public var maxBytes: Int64 = 5_368_709_120
    }

    public struct Workers: Sendable {
        public var count = 8
        public var spoolDirectory = "/var/lib/afterimage/spool"
        /// A claimed job's lease; a crashed daemon's work returns to the queue within this many seconds.
        public var leaseSeconds = 30
        /// On SIGTERM, how long running transfers may go on before they are released to other instances.
        public var drainTimeoutSeconds = 30
        /// Stale spool files (of finished or failed assets, of writers that are gone) are removed this often,
        /// once untouched for as long (`SpoolSweeper`).
        public var spoolSweepIntervalSeconds = 600
    }

    public struct API: Sendable {
        /// Plain tokens or `sha256:<hex>` digests of them.
        public var tokens: [String] = []
        /// Tokens that may also queue URLs for archiving (`POST /v1/archives`), the same forms. A token only in
        /// `tokens` may read but not archive.
        public var archiveTokens: [String] = []
        /// Tokens that may also delete predictions (`DELETE /v1/predictions/{provider}/{id}`), the same forms;
        /// tokens in `archiveTokens` may delete too. A token only in `tokens` may read but not delete.
        public var adminTokens: [String] = []
        /// How long a settled prediction's lookup answer may be served from memory; 0 turns the cache off.
        /// Retries and new assets are announced to every instance at once; this bounds only how late an
        /// unannounced change (another instance filling in a field of a finished prediction, a hand edit in
        /// SQL) shows up in this one's answers.
        public var lookupCacheSeconds = 30
        /// The most memory the lookup cache's entries may take (bytes of their text plus a fixed cost per
        /// entry and asset); past it, the least recently read are evicted (CLOCK). 0 turns the cache off.
        /// With millions of predictions the cache holds the popular ones only, so this, not the table's
        /// size, bounds the daemon's memory.
        public var lookupCacheBytes = LookupCache.defaultMaxBytes
    }

    /// What is kept how long (`Lifecycle/RetentionService`).
    public struct Retention: Sendable {
        /// Seconds a raw delivery body is kept once all its assets are settled; then it is replaced by its
        /// SHA-256 and size. 0 keeps bodies for ever.
        public var deliveryBodiesSeconds = 604_800
        /// Seconds a stored object is kept; then its prediction is deleted as on demand (tombstone kept).
        /// 0 (the default) keeps objects for ever.
        public var objectsSeconds = 0
        /// Seconds between retention passes.
        public var intervalSeconds = 60
    }

    public struct UI: Sendable {
        /// Serve the web console at `/ui/` (it reads the lookup API with a token from `api.tokens`).
        public var enabled = true
    }

    public var http = HTTP()
    public var database = Database()
    public var storage = Storage()
    public var replicate = Replicate()
    public var stability = Stability()
    public var ideogram = Ideogram()
    public var fal = Fal()
    public var fetch = Fetch()
    public var workers = Workers()
    public var api = API()
    public var retention = Retention()
    public var ui = UI()
    public var logLevel = "info"

    public init() {}
}

extension Settings {
    /// The database URI, or the error `serve`, `migrate` and `check-config` report when it is missing.
    public func requireDatabaseURL() throws(ConfigurationError) -> String {
        guard let url = database.url, !url.isEmpty else {
            throw ConfigurationError(
                key: "database.url", "is required (a libpq URI such as postgresql://user@host:5432/afterimage; environment AFTERIMAGE_DATABASE_URL)")
        }
        return url
    }

    /// The credential sent with downloads of `provider`'s assets, and the only hosts it goes to (see
    /// `Provider.sourceCredential`): Replicate's API token, to `replicate.token_hosts`. Nil for the others
    /// (Stability's keys go only to `stability.base_url`, with its polls).
    public func sourceCredential(for provider: ProviderName) -> SourceCredential? {
        ProviderRegistry.sourceCredential(for: provider, in: self)
    }

    /// Checks everything `serve` needs, so `check-config` and `serve` fail the same way before doing anything.
    public func validateForServe() throws(ConfigurationError) {
        _ = try requireDatabaseURL()
        for (key, value) in [
            ("storage.endpoint", storage.endpoint), ("storage.bucket", storage.bucket),
            ("storage.access_key_id", storage.accessKeyID),
            ("storage.secret_access_key", storage.secretAccessKey),
        ] {
            guard let value, !value.isEmpty else { throw ConfigurationError(key: key, "is required") }
        }
    }
}
