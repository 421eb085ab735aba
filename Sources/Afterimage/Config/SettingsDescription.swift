import Foundation

extension Settings {
    /// The effective configuration as `key = value` lines for `check-config`, in `SettingsLoader.keys`
    /// order. Secrets show only whether they are set, never any part of the value: the output ends up
    /// in terminals, tickets and CI logs. A URL's userinfo never shows either (`https://***@host`),
    /// whichever key it is in.
    public func redactedDescription() -> String {
        func secret(_ value: String?) -> String { (value?.isEmpty ?? true) ? "(unset)" : "(set, redacted)" }
        func secrets(_ values: [String]) -> String { values.isEmpty ? "(unset)" : "(\(values.count) set, redacted)" }
        func plain(_ value: String?) -> String { value.map { "\"\($0)\"" } ?? "(unset)" }
        func list(_ values: [String]) -> String { "[" + values.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }

        let lines: [(String, String)] = [
            ("http.host", plain(http.host)), ("http.port", "\(http.port)"),
            ("http.max_body_bytes", "\(http.maxBodyBytes)"),
            ("http.stability_max_body_bytes", "\(http.stabilityMaxBodyBytes)"),
            ("http.connection_limit", "\(http.connectionLimit)"),
            ("http.connection_timeout", "\(http.connectionTimeoutSeconds)"),
            ("http.header_timeout", "\(http.headerTimeoutSeconds)"),
            ("http.request_timeout", "\(http.requestTimeoutSeconds)"),
            ("http.per_ip_connection_limit", "\(http.perIPConnectionLimit)"),
            ("http.max_inflight_body_bytes", "\(http.maxInflightBodyBytes)"),
            ("http.intake_timeout", "\(http.intakeTimeoutSeconds)"),
            ("database.url", secret(database.url)), ("database.pool_size", "\(database.poolSize)"),
            ("database.migrate", "\(database.migrate)"),
            ("database.acquire_timeout_ms", "\(database.acquireTimeoutMilliseconds)"),
            ("database.statement_timeout_ms", "\(database.statementTimeoutMilliseconds)"),
            ("database.lock_timeout_ms", "\(database.lockTimeoutMilliseconds)"),
            ("database.idle_in_transaction_timeout_ms", "\(database.idleInTransactionTimeoutMilliseconds)"),
            ("database.tcp_user_timeout_ms", "\(database.tcpUserTimeoutMilliseconds)"),
            ("database.keepalives_idle", "\(database.keepalivesIdleSeconds)"),
            ("database.keepalives_interval", "\(database.keepalivesIntervalSeconds)"),
            ("database.keepalives_count", "\(database.keepalivesCount)"),
            ("storage.endpoint", plain(storage.endpoint)), ("storage.region", plain(storage.region)),
            ("storage.bucket", plain(storage.bucket)), ("storage.access_key_id", secret(storage.accessKeyID)),
            ("storage.secret_access_key", secret(storage.secretAccessKey)),
            ("storage.path_style", "\(storage.pathStyle)"), ("storage.prefix", plain(storage.prefix)),
            ("storage.presign_ttl", "\(storage.presignTTL)"),
            ("storage.multipart_threshold", "\(storage.multipartThreshold)"), ("storage.part_size", "\(storage.partSize)"),
            ("replicate.webhook_secret", secrets(replicate.webhookSecrets)),
            ("replicate.api_token", secret(replicate.apiToken)), ("replicate.retention", "\(replicate.retention)"),
            ("replicate.base_url", plain(replicate.baseURL)),
            ("replicate.reconcile_interval", "\(replicate.reconcileInterval)"),
            ("replicate.reconcile_margin", "\(replicate.reconcileMargin)"),
            ("replicate.reconcile_stale_after", "\(replicate.reconcileStaleAfter)"),
            ("replicate.token_hosts", list(replicate.tokenHosts)), ("replicate.reconcile_web", "\(replicate.reconcileWeb)"),
            ("stability.webhook_secret", secrets(stability.webhookSecrets)),
            ("stability.api_key", secrets(stability.apiKeys)), ("stability.base_url", plain(stability.baseURL)),
            ("ideogram.jwks_url", plain(ideogram.jwksURL)), ("ideogram.public_keys", list(ideogram.publicKeys)),
            ("ideogram.retention", "\(ideogram.retention)"),
            ("fal.jwks_url", plain(fal.jwksURL)), ("fal.public_keys", list(fal.publicKeys)), ("fal.retention", "\(fal.retention)"),
            ("fetch.allowed_hosts", list(fetch.allowedHosts)), ("fetch.allowed_schemes", list(fetch.allowedSchemes)),
            ("fetch.allow_private_networks", "\(fetch.allowPrivateNetworks)"), ("fetch.max_bytes", "\(fetch.maxBytes)"),
            ("workers.count", "\(workers.count)"), ("workers.spool_dir", plain(workers.spoolDirectory)),
            ("workers.lease_seconds", "\(workers.leaseSeconds)"), ("workers.drain_timeout", "\(workers.drainTimeoutSeconds)"),
            ("workers.spool_sweep_interval", "\(workers.spoolSweepIntervalSeconds)"),
            ("api.tokens", secrets(api.tokens)), ("api.archive_tokens", secrets(api.archiveTokens)),
            ("api.admin_tokens", secrets(api.adminTokens)),
            ("retention.delivery_bodies", "\(retention.deliveryBodiesSeconds)"), ("retention.objects", "\(retention.objectsSeconds)"),
            ("retention.interval", "\(retention.intervalSeconds)"),
            ("api.lookup_cache_seconds", "\(api.lookupCacheSeconds)"), ("api.lookup_cache_bytes", "\(api.lookupCacheBytes)"),
            ("ui.enabled", "\(ui.enabled)"),
            ("log.level", plain(logLevel)),
        ]
        return URLRedaction.redactingUserInfo(lines.map { "\($0.0) = \($0.1)" }.joined(separator: "\n"))
    }
}
