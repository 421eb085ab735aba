import Foundation

/// The daemon's effective configuration, resolved once from all sources (see `SettingsLoader`).
/// Plain values so the rest of the program never touches the configuration library.
public struct Settings: Sendable {
    public struct HTTP: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        public var maxBodyBytes = 1_048_576
        /// Stability inline results carry base64 images and videos, hence a larger default.
        public var stabilityMaxBodyBytes = 67_108_864
        public var connectionLimit = 256
        public var connectionTimeoutSeconds = 30
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
    }

    public struct Stability: Sendable {
        public var webhookSecrets: [String] = []
        public var apiKey: String?
        public var baseURL = "https://api.stability.ai"
    }

    public struct Fetch: Sendable {
        public var allowedHosts = ["replicate.delivery", "*.replicate.delivery", "api.replicate.com", "api.stability.ai"]
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
    }

    public struct API: Sendable {
        /// Plain tokens or `sha256:<hex>` digests of them.
        public var tokens: [String] = []
        /// How long a settled prediction's lookup answer may be served from memory; 0 turns the cache off.
        /// Retries and new assets are announced to every instance at once; this bounds only how late an
        /// unannounced change (another instance filling in a field of a finished prediction, a hand edit in
        /// SQL) shows up in this one's answers.
        public var lookupCacheSeconds = 30
    }

    public var http = HTTP()
    public var database = Database()
    public var storage = Storage()
    public var replicate = Replicate()
    public var stability = Stability()
    public var fetch = Fetch()
    public var workers = Workers()
    public var api = API()
    public var logLevel = "info"

    public init() {}
}

extension Settings {
    /// The database URI, or the error `serve`, `migrate` and `check-config` report when it is missing.
    public func requireDatabaseURL() throws(ConfigurationError) -> String {
        guard let url = database.url, !url.isEmpty else {
            throw ConfigurationError(key: "database.url", "is required (a libpq URI such as postgresql://user@host:5432/afterimage; environment AFTERIMAGE_DATABASE_URL)")
        }
        return url
    }

    /// Checks everything `serve` needs, so `check-config` and `serve` fail the same way before doing anything.
    public func validateForServe() throws(ConfigurationError) {
        _ = try requireDatabaseURL()
        for (key, value) in [("storage.endpoint", storage.endpoint), ("storage.bucket", storage.bucket),
                             ("storage.access_key_id", storage.accessKeyID),
                             ("storage.secret_access_key", storage.secretAccessKey)] {
            guard let value, !value.isEmpty else { throw ConfigurationError(key: key, "is required") }
        }
    }
}
