import Configuration
import Foundation
import MicroHTTP
import S3
import SystemPackage

/// Resolves `Settings` from, highest precedence first: environment variables `AFTERIMAGE_*`, secret files
/// in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), the JSON config file, then defaults.
///
/// Key names: `storage.secret_access_key` is `AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY` in the environment and
/// the file `storage-secret_access_key` in the credentials directory (swift-configuration's directory
/// encoding: components joined by `-`). Lists are JSON arrays in the file and comma- or space-separated
/// strings elsewhere.
public enum SettingsLoader {
    /// Every key the daemon reads and whether it is a secret; `check-config` prints them in this order.
    public static let keys: [(key: String, secret: Bool)] = [
        ("http.host", false), ("http.port", false), ("http.max_body_bytes", false),
        ("http.stability_max_body_bytes", false), ("http.connection_limit", false),
        ("http.connection_timeout", false), ("http.header_timeout", false), ("http.request_timeout", false),
        ("http.per_ip_connection_limit", false), ("http.max_inflight_body_bytes", false),
        ("http.intake_timeout", false),
        ("database.url", true), ("database.pool_size", false), ("database.migrate", false),
        ("database.acquire_timeout_ms", false), ("database.statement_timeout_ms", false),
        ("database.lock_timeout_ms", false), ("database.idle_in_transaction_timeout_ms", false),
        ("database.tcp_user_timeout_ms", false), ("database.keepalives_idle", false),
        ("database.keepalives_interval", false), ("database.keepalives_count", false),
        ("storage.endpoint", false), ("storage.region", false), ("storage.bucket", false),
        ("storage.access_key_id", true), ("storage.secret_access_key", true), ("storage.path_style", false),
        ("storage.prefix", false), ("storage.presign_ttl", false), ("storage.multipart_threshold", false),
        ("storage.part_size", false),
        ("replicate.webhook_secret", true), ("replicate.api_token", true), ("replicate.retention", false),
        ("replicate.base_url", false),
        ("replicate.reconcile_interval", false), ("replicate.reconcile_margin", false),
        ("replicate.reconcile_stale_after", false), ("replicate.token_hosts", false), ("replicate.reconcile_web", false),
        ("stability.webhook_secret", true), ("stability.api_key", true), ("stability.base_url", false),
        ("ideogram.jwks_url", false), ("ideogram.public_keys", false), ("ideogram.retention", false),
        ("fal.jwks_url", false), ("fal.public_keys", false), ("fal.retention", false),
        ("fetch.allowed_hosts", false), ("fetch.allowed_schemes", false),
        ("fetch.allow_private_networks", false), ("fetch.max_bytes", false),
        ("workers.count", false), ("workers.spool_dir", false), ("workers.lease_seconds", false),
        ("workers.drain_timeout", false), ("workers.spool_sweep_interval", false),
        ("api.tokens", true), ("api.archive_tokens", true), ("api.admin_tokens", true), ("api.lookup_cache_seconds", false),
        ("retention.delivery_bodies", false), ("retention.objects", false), ("retention.interval", false),
        ("ui.enabled", false),
        ("log.level", false),
    ]

    /// Loads settings. `environment` is injectable so tests need not touch the process environment.
    public static func load(
        configFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws(ConfigurationError) -> Settings {
        let reader = try await makeReader(configFile: configFile, environment: environment)
        return try resolve(ConfigValues(reader: reader))
    }

    static func makeReader(configFile: String?, environment: [String: String]) async throws(ConfigurationError) -> ConfigReader {
        var providers: [any ConfigProvider] = []
        // Environment: only AFTERIMAGE_* names are ours; everything is treated as potentially secret.
        let ours = environment.filter { $0.key.hasPrefix("AFTERIMAGE_") }
        providers.append(
            EnvironmentVariablesProvider(environmentVariables: ours, secretsSpecifier: .all)
                .prefixKeys(with: "afterimage"))
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            do {
                providers.append(try await DirectoryFilesProvider(directoryPath: FilePath(directory)))
            } catch {
                throw ConfigurationError(key: "CREDENTIALS_DIRECTORY", "cannot read \(directory): \(error)")
            }
        }
        if let configFile {
            guard FileManager.default.isReadableFile(atPath: configFile) else {
                throw ConfigurationError(key: "--config", "cannot read \(configFile)")
            }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(configFile)))
            } catch {
                throw ConfigurationError(key: "--config", "\(configFile) is not a valid JSON config file: \(error)")
            }
        }
        return ConfigReader(providers: providers)
    }

    static func resolve(_ v: ConfigValues) throws(ConfigurationError) -> Settings {
        var s = Settings()
        s.http.host = try v.string("http.host") ?? s.http.host
        s.http.port = try v.int("http.port", in: 0...65535) ?? s.http.port
        s.http.maxBodyBytes = try v.int("http.max_body_bytes", in: 1024...1 << 30) ?? s.http.maxBodyBytes
        s.http.stabilityMaxBodyBytes = try v.int("http.stability_max_body_bytes", in: 1024...1 << 31) ?? s.http.stabilityMaxBodyBytes
        // Ranges are the HTTP server's own, so a value the loader accepts is one the server starts with.
        typealias Server = HTTPServer.Configuration
        s.http.connectionLimit = try v.int("http.connection_limit", in: Server.connectionLimitRange) ?? s.http.connectionLimit
        s.http.connectionTimeoutSeconds = try v.int("http.connection_timeout", in: 1...3600) ?? s.http.connectionTimeoutSeconds
        s.http.headerTimeoutSeconds = try v.int("http.header_timeout", in: Server.headerTimeoutRange) ?? s.http.headerTimeoutSeconds
        s.http.requestTimeoutSeconds = try v.int("http.request_timeout", in: Server.requestTimeoutRange) ?? s.http.requestTimeoutSeconds
        guard s.http.headerTimeoutSeconds <= s.http.requestTimeoutSeconds else {
            throw ConfigurationError(key: "http.header_timeout", "must not exceed http.request_timeout (\(s.http.requestTimeoutSeconds))")
        }
        s.http.perIPConnectionLimit = try v.int("http.per_ip_connection_limit", in: Server.perIPConnectionLimitRange) ?? s.http.perIPConnectionLimit
        s.http.maxInflightBodyBytes = try v.int("http.max_inflight_body_bytes", in: Server.maxInflightBodyBytesRange) ?? s.http.maxInflightBodyBytes
        s.http.intakeTimeoutSeconds = try v.int("http.intake_timeout", in: 1...300) ?? s.http.intakeTimeoutSeconds

        s.database.url = try v.string("database.url", secret: true)
        s.database.poolSize = try v.int("database.pool_size", in: 1...1000) ?? s.database.poolSize
        s.database.migrate = try v.bool("database.migrate") ?? s.database.migrate
        s.database.acquireTimeoutMilliseconds = try v.int("database.acquire_timeout_ms", in: 1...600_000) ?? s.database.acquireTimeoutMilliseconds
        s.database.statementTimeoutMilliseconds =
            try v.int("database.statement_timeout_ms", in: 0...86_400_000) ?? s.database.statementTimeoutMilliseconds
        s.database.lockTimeoutMilliseconds = try v.int("database.lock_timeout_ms", in: 0...86_400_000) ?? s.database.lockTimeoutMilliseconds
        s.database.idleInTransactionTimeoutMilliseconds =
            try v.int("database.idle_in_transaction_timeout_ms", in: 0...86_400_000)
            ?? s.database.idleInTransactionTimeoutMilliseconds
        s.database.tcpUserTimeoutMilliseconds = try v.int("database.tcp_user_timeout_ms", in: 0...3_600_000) ?? s.database.tcpUserTimeoutMilliseconds
        s.database.keepalivesIdleSeconds = try v.int("database.keepalives_idle", in: 1...7200) ?? s.database.keepalivesIdleSeconds
        s.database.keepalivesIntervalSeconds = try v.int("database.keepalives_interval", in: 1...600) ?? s.database.keepalivesIntervalSeconds
        s.database.keepalivesCount = try v.int("database.keepalives_count", in: 1...100) ?? s.database.keepalivesCount

        s.storage.endpoint = try v.string("storage.endpoint")
        if let endpoint = s.storage.endpoint, let problem = S3Endpoint.endpointProblem(endpoint) {
            // The S3 client's own rule, so a value accepted here is one the daemon starts with.
            throw ConfigurationError(key: "storage.endpoint", "\(problem), such as https://s3.us-east-1.amazonaws.com")
        }
        s.storage.region = try v.string("storage.region") ?? s.storage.region
        s.storage.bucket = try v.string("storage.bucket")
        s.storage.accessKeyID = try v.string("storage.access_key_id", secret: true)
        s.storage.secretAccessKey = try v.string("storage.secret_access_key", secret: true)
        s.storage.pathStyle = try v.bool("storage.path_style") ?? s.storage.pathStyle
        s.storage.prefix = try v.string("storage.prefix") ?? s.storage.prefix
        s.storage.presignTTL = try v.int("storage.presign_ttl", in: 1...604_800) ?? s.storage.presignTTL
        s.storage.multipartThreshold = Int64(try v.int("storage.multipart_threshold", in: 5 << 20...5 << 30) ?? Int(s.storage.multipartThreshold))
        s.storage.partSize = Int64(try v.int("storage.part_size", in: 5 << 20...5 << 30) ?? Int(s.storage.partSize))

        s.replicate.webhookSecrets = try v.list("replicate.webhook_secret", secret: true) ?? []
        try validateWebhookSecrets(s.replicate.webhookSecrets, key: "replicate.webhook_secret")
        s.replicate.apiToken = try v.string("replicate.api_token", secret: true)
        s.replicate.retention = try v.int("replicate.retention", in: 60...30 * 86400) ?? s.replicate.retention
        s.replicate.baseURL = try v.string("replicate.base_url") ?? s.replicate.baseURL
        guard Origin(s.replicate.baseURL) != nil else {
            throw ConfigurationError(key: "replicate.base_url", "must be an http(s) URL such as https://api.replicate.com")
        }
        s.replicate.reconcileInterval = try v.int("replicate.reconcile_interval", in: 0...86400) ?? s.replicate.reconcileInterval
        s.replicate.reconcileMargin = try v.int("replicate.reconcile_margin", in: 0...86400) ?? s.replicate.reconcileMargin
        s.replicate.reconcileStaleAfter = try v.int("replicate.reconcile_stale_after", in: 0...30 * 86400) ?? s.replicate.reconcileStaleAfter
        s.replicate.tokenHosts = try v.list("replicate.token_hosts") ?? s.replicate.tokenHosts
        try validateHostPatterns(s.replicate.tokenHosts, key: "replicate.token_hosts")
        s.replicate.reconcileWeb = try v.bool("replicate.reconcile_web") ?? s.replicate.reconcileWeb

        s.stability.webhookSecrets = try v.list("stability.webhook_secret", secret: true) ?? []
        try validateWebhookSecrets(s.stability.webhookSecrets, key: "stability.webhook_secret")
        s.stability.apiKeys = StabilitySource.distinct(try v.list("stability.api_key", secret: true) ?? [])
        s.stability.baseURL = try v.string("stability.base_url") ?? s.stability.baseURL
        if let problem = baseURLProblem(s.stability.baseURL) {
            throw ConfigurationError(key: "stability.base_url", "\(problem), such as https://api.stability.ai")
        }

        s.ideogram.jwksURL = try v.string("ideogram.jwks_url") ?? s.ideogram.jwksURL
        try validateHTTPURL(s.ideogram.jwksURL, key: "ideogram.jwks_url")
        s.ideogram.publicKeys = try v.list("ideogram.public_keys") ?? s.ideogram.publicKeys
        try validatePublicKeys(s.ideogram.publicKeys, key: "ideogram.public_keys")
        s.ideogram.retention = try v.int("ideogram.retention", in: 60...30 * 86400) ?? s.ideogram.retention
        s.fal.jwksURL = try v.string("fal.jwks_url") ?? s.fal.jwksURL
        try validateHTTPURL(s.fal.jwksURL, key: "fal.jwks_url")
        s.fal.publicKeys = try v.list("fal.public_keys") ?? s.fal.publicKeys
        try validatePublicKeys(s.fal.publicKeys, key: "fal.public_keys")
        s.fal.retention = try v.int("fal.retention", in: 0...365 * 86400) ?? s.fal.retention

        s.fetch.allowedHosts = try v.list("fetch.allowed_hosts") ?? s.fetch.allowedHosts
        s.fetch.allowedSchemes = try v.list("fetch.allowed_schemes") ?? s.fetch.allowedSchemes
        for scheme in s.fetch.allowedSchemes where !["http", "https"].contains(scheme) {
            throw ConfigurationError(key: "fetch.allowed_schemes", "only http and https are supported, not \(scheme)")
        }
        s.fetch.allowPrivateNetworks = try v.bool("fetch.allow_private_networks") ?? s.fetch.allowPrivateNetworks
        s.fetch.maxBytes = Int64(try v.int("fetch.max_bytes", in: 1...Int(Int64.max)) ?? Int(s.fetch.maxBytes))

        s.workers.count = try v.int("workers.count", in: 0...256) ?? s.workers.count
        s.workers.spoolDirectory = try v.string("workers.spool_dir") ?? s.workers.spoolDirectory
        s.workers.leaseSeconds = try v.int("workers.lease_seconds", in: 2...3600) ?? s.workers.leaseSeconds
        s.workers.drainTimeoutSeconds = try v.int("workers.drain_timeout", in: 0...3600) ?? s.workers.drainTimeoutSeconds
        s.workers.spoolSweepIntervalSeconds = try v.int("workers.spool_sweep_interval", in: 1...86400) ?? s.workers.spoolSweepIntervalSeconds

        s.api.tokens = try v.list("api.tokens", secret: true) ?? []
        try validateTokens(s.api.tokens, key: "api.tokens")
        s.api.archiveTokens = try v.list("api.archive_tokens", secret: true) ?? []
        try validateTokens(s.api.archiveTokens, key: "api.archive_tokens")
        s.api.adminTokens = try v.list("api.admin_tokens", secret: true) ?? []
        try validateTokens(s.api.adminTokens, key: "api.admin_tokens")

        s.retention.deliveryBodiesSeconds = try v.int("retention.delivery_bodies", in: 0...3650 * 86400) ?? s.retention.deliveryBodiesSeconds
        s.retention.objectsSeconds = try v.int("retention.objects", in: 0...3650 * 86400) ?? s.retention.objectsSeconds
        s.retention.intervalSeconds = try v.int("retention.interval", in: 1...86400) ?? s.retention.intervalSeconds

        s.api.lookupCacheSeconds = try v.int("api.lookup_cache_seconds", in: 0...300) ?? s.api.lookupCacheSeconds
        s.api.lookupCacheBytes = try v.int("api.lookup_cache_bytes", in: 0...(64 << 30)) ?? s.api.lookupCacheBytes
        s.ui.enabled = try v.bool("ui.enabled") ?? s.ui.enabled

        s.logLevel = try v.string("log.level") ?? s.logLevel
        guard LogSetup.level(named: s.logLevel) != nil else {
            throw ConfigurationError(key: "log.level", "must be one of trace, debug, info, notice, warning, error, critical")
        }
        return s
    }

    /// Why `url` cannot be an API base URL (`stability.base_url`), or nil: an http(s) URL with a host, and
    /// no userinfo, query or fragment (result URLs are built by appending paths to it, and it is logged).
    /// The reason never repeats the value.
    static func baseURLProblem(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = components.host, !host.isEmpty
        else {
            return "must be an http(s) URL"
        }
        guard components.user == nil, components.password == nil, !url.contains("@") else {
            return "must not carry a user or password"
        }
        guard components.query == nil, components.fragment == nil else { return "must not have a query or fragment" }
        return nil
    }

    /// Plain tokens, or `sha256:` and the 64 hex digits of a token's digest.
    static func validateTokens(_ tokens: [String], key: String) throws(ConfigurationError) {
        for token in tokens where token.hasPrefix("sha256:") {
            let hex = token.dropFirst("sha256:".count)
            guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                throw ConfigurationError(key: key, "an entry starting with sha256: must carry 64 hex digits")
            }
        }
    }

    static func validateHTTPURL(_ value: String, key: String) throws(ConfigurationError) {
        guard let url = URL(string: value), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty
        else {
            throw ConfigurationError(key: key, "must be an http(s) URL")
        }
    }

    /// Ed25519 public keys as JWKS writes them: 32 bytes, base64url (padding optional).
    static func validatePublicKeys(_ keys: [String], key: String) throws(ConfigurationError) {
        for value in keys where JSONWebKeySet.publicKey(base64URL: value) == nil {
            throw ConfigurationError(
                key: key, "each entry must be a 32-byte Ed25519 public key in base64url (a JWK's \"x\"), not \"\(value.prefix(60))\"")
        }
    }

    /// Host names or `*.domain` wildcards, nothing else: a URL or a bare `*` here would send a credential to
    /// more hosts than the operator meant.
    static func validateHostPatterns(_ patterns: [String], key: String) throws(ConfigurationError) {
        for pattern in patterns {
            let name = pattern.hasPrefix("*.") ? String(pattern.dropFirst(2)) : pattern
            let valid =
                !name.isEmpty && name.utf8.count <= 253 && !name.hasPrefix(".") && !name.hasSuffix(".") && !name.contains("..")
                && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "." || $0 == ":") }
            guard valid else {
                throw ConfigurationError(key: key, "\"\(pattern)\" is not a host name or a *.domain wildcard")
            }
        }
    }

    /// Standard Webhooks secrets are `whsec_` + base64; a typo here would make every delivery a 401, so
    /// it is caught at start-up instead. The message never repeats the secret.
    static func validateWebhookSecrets(_ secrets: [String], key: String) throws(ConfigurationError) {
        for secret in secrets {
            let body = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
            guard let decoded = Data(base64Encoded: body), !decoded.isEmpty else {
                throw ConfigurationError(key: key, "each secret must be whsec_ followed by base64 (the value is not shown)")
            }
        }
    }
}

/// Typed access to the reader that turns the library's "missing" and "wrong type" into our errors, each
/// naming the key.
struct ConfigValues {
    let reader: ConfigReader

    /// swift-configuration reports a missing key and an unconvertible value through one package-internal
    /// error type; its description is the only public distinction.
    private static func isMissing(_ error: any Error) -> Bool {
        String(describing: error).hasPrefix("Missing required")
    }

    func string(_ key: String, secret: Bool = false) throws(ConfigurationError) -> String? {
        do {
            let value = try reader.requiredString(forKey: ConfigKey(key), isSecret: secret)
            return value
        } catch {
            if Self.isMissing(error) { return nil }
            throw ConfigurationError(key: key, "must be a string")
        }
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        let value: Int
        do {
            value = try reader.requiredInt(forKey: ConfigKey(key))
        } catch {
            if Self.isMissing(error) { return nil }
            throw ConfigurationError(key: key, "must be an integer")
        }
        guard range.contains(value) else {
            throw ConfigurationError(key: key, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }

    func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        do {
            return try reader.requiredBool(forKey: ConfigKey(key))
        } catch {
            if Self.isMissing(error) { return nil }
            throw ConfigurationError(key: key, "must be true or false")
        }
    }

    /// A JSON array in the file; a comma- or whitespace-separated string anywhere.
    func list(_ key: String, secret: Bool = false) throws(ConfigurationError) -> [String]? {
        var raw: [String]
        do {
            raw = try reader.requiredStringArray(forKey: ConfigKey(key), isSecret: secret)
        } catch {
            if Self.isMissing(error) { return nil }
            guard let single = try string(key, secret: secret) else { return nil }
            raw = [single]
        }
        return raw.flatMap { $0.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init) }
    }
}
