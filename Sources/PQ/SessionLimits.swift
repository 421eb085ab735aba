/// Deadlines for one PostgreSQL session, so that no statement, lock wait, forgotten transaction or
/// silently dead peer can hold a thread for ever.
///
/// Server-side limits are sent as session settings (`-c statement_timeout=…` in the startup packet, so
/// they hold from the first statement, without a round trip); the TCP ones are libpq connection
/// keywords. A value of 0 leaves the server's (or the role's) own setting alone.
public struct SessionLimits: Sendable, Equatable {
    /// `statement_timeout`: the server cancels any statement running longer (SQLSTATE 57014).
    public var statementTimeoutMilliseconds = 0
    /// `lock_timeout`: the server gives up a lock wait after this long (SQLSTATE 55P03).
    public var lockTimeoutMilliseconds = 0
    /// `idle_in_transaction_session_timeout`: the server ends a session left idle inside a transaction,
    /// releasing its locks.
    public var idleInTransactionTimeoutMilliseconds = 0
    /// libpq `tcp_user_timeout`: unacknowledged data for this long means the connection is dead (the kernel
    /// would otherwise retransmit for about 15 minutes).
    public var tcpUserTimeoutMilliseconds = 0
    /// libpq keepalives: a silent peer is probed after `keepalivesIdleSeconds` of quiet, every
    /// `keepalivesIntervalSeconds`, and given up after `keepalivesCount` unanswered probes.
    public var keepalivesIdleSeconds = 30
    public var keepalivesIntervalSeconds = 10
    public var keepalivesCount = 3

    public init() {}

    /// The `-c name=value` settings for the `options` connection keyword; empty when none is set.
    var serverOptions: String {
        [
            ("statement_timeout", statementTimeoutMilliseconds), ("lock_timeout", lockTimeoutMilliseconds),
            ("idle_in_transaction_session_timeout", idleInTransactionTimeoutMilliseconds),
        ]
        .filter { $0.1 > 0 }
        .map { "-c \($0.0)=\($0.1)" }
        .joined(separator: " ")
    }
}
