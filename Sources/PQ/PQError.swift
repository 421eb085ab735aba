/// Every failure of the PQ module, as a value callers can switch on.
///
/// The `code` says what the caller can do about it (retry on another connection, report a
/// conflict, give up); `sqlState` carries the server's exact condition for callers that need it
/// (a unique violation becomes "duplicate"). The `message` is the server's primary message or a
/// message of our own: never the connection URI (it may hold a password) and never the server's
/// DETAIL line, which can quote row values.
public struct PQError: Error, CustomStringConvertible, Sendable {
    /// An open set of failure kinds (a struct, not an enum, so new kinds are not source-breaking).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connectionFailed, connectionLost, queryFailed, poolTimeout, poolClosed
            case decodingFailed, invalidParameter, invalidUse
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A new connection could not be made (server down, refused, bad URI, authentication).
        public static let connectionFailed = Code(.connectionFailed)
        /// An established connection broke; the statement's outcome is unknown if it was a COMMIT.
        public static let connectionLost = Code(.connectionLost)
        /// The server rejected the statement; `sqlState` says why.
        public static let queryFailed = Code(.queryFailed)
        /// Every pooled connection stayed busy for the whole acquire timeout.
        public static let poolTimeout = Code(.poolTimeout)
        /// The pool was closed.
        public static let poolClosed = Code(.poolClosed)
        /// A column could not be read as the requested Swift type (NULL, overflow, bad text).
        public static let decodingFailed = Code(.decodingFailed)
        /// A parameter cannot be sent (a string with a NUL byte, too many parameters, bad channel name).
        public static let invalidParameter = Code(.invalidParameter)
        /// The API was used in a way it does not support (a closed connection, a nested transaction).
        public static let invalidUse = Code(.invalidUse)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// The server's SQLSTATE (`PG_DIAG_SQLSTATE`), e.g. "23505"; nil for client-side failures.
    public let sqlState: String?
    /// The server's primary message or our own; never secrets, never DETAIL.
    public let message: String
    /// The constraint the server named (`PG_DIAG_CONSTRAINT_NAME`), so a caller can tell which
    /// unique key it hit without parsing the message.
    public let constraintName: String?

    public init(code: Code, message: String, sqlState: String? = nil, constraintName: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.constraintName = constraintName
    }

    /// True when the statement hit a unique constraint: the caller's "already there" case.
    public var isUniqueViolation: Bool { sqlState == "23505" }

    /// True for SQLSTATE class 22 (data exception: a value the column's type cannot hold, such as a NUL in
    /// jsonb): the data, not the database, is the problem, and sending it again will not help.
    public var isDataException: Bool { sqlState?.hasPrefix("22") ?? false }

    /// True when the database cannot do the work right now but may a little later, so the caller should
    /// answer "retry later" (503) rather than blame the request: no connection (none could be made, it
    /// broke, none became free, the pool is closed or not yet admitting), or the server gave up on a
    /// deadline or is going away.
    public var isUnavailable: Bool {
        if [.connectionFailed, .connectionLost, .poolTimeout, .poolClosed].contains(code) { return true }
        guard let sqlState else { return false }
        return Self.unavailableStates.contains(sqlState)
    }

    /// SQLSTATEs that mean "not now": 57014 query_canceled (statement_timeout), 55P03 lock_not_available
    /// (lock_timeout), 25P03 idle_in_transaction_session_timeout, 57P01/57P02/57P03 the server is shutting
    /// down, crashed or starting, 53300 too_many_connections.
    static let unavailableStates: Set<String> = ["57014", "55P03", "25P03", "57P01", "57P02", "57P03", "53300"]

    public var description: String {
        var text = "PQError(\(code)"
        if let sqlState { text += ", SQLSTATE \(sqlState)" }
        if let constraintName { text += ", constraint \(constraintName)" }
        return text + "): " + message
    }
}
