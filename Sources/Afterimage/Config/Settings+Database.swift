import PQ

extension Settings.Database {
    /// The deadlines every database session of the daemon runs with (`database.*_timeout_ms`, keepalives).
    public var sessionLimits: SessionLimits {
        var limits = SessionLimits()
        limits.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        limits.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        limits.idleInTransactionTimeoutMilliseconds = idleInTransactionTimeoutMilliseconds
        limits.tcpUserTimeoutMilliseconds = tcpUserTimeoutMilliseconds
        limits.keepalivesIdleSeconds = keepalivesIdleSeconds
        limits.keepalivesIntervalSeconds = keepalivesIntervalSeconds
        limits.keepalivesCount = keepalivesCount
        return limits
    }

    /// How long one database step (a statement, with its connection attempt) can keep a thread from
    /// coming back: statement_timeout plus the connect timeout, or five minutes when statements are not
    /// bounded. Loops that talk to the database may be silent this long before the watchdog calls them
    /// stalled (see `Heartbeats`).
    public var longestStep: Duration {
        let statement: Duration = statementTimeoutMilliseconds > 0 ? .milliseconds(statementTimeoutMilliseconds) : .seconds(300)
        return statement + .seconds(Self.connectTimeoutSeconds)
    }

    /// libpq's connect timeout for the daemon's sessions.
    public static let connectTimeoutSeconds = 5
}
