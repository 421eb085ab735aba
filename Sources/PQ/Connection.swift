import CLibPQ
import Foundation

/// One PostgreSQL session over libpq, with a blocking API.
///
/// Blocking is deliberate: callers are our own worker threads and the
/// HTTP handler pool (`MicroHTTP.HandlerPool`), never Swift concurrency's cooperative pool.
///
/// Thread rule (libpq's): a connection is used by one thread at a time. It is `@unchecked
/// Sendable` only so the `Pool` can hand it from thread to thread: the pool's mutex orders each
/// hand-over, and between check-out and check-in exactly one thread holds it. Do not share a
/// connection between threads that may use it at the same time.
public final class Connection: @unchecked Sendable {
    /// The libpq handle; nil once closed.
    private(set) var handle: OpaquePointer?
    /// Statements `query(prepared:)` has prepared in this session. They live and die with the session: a
    /// replaced connection is a new `Connection` with an empty cache.
    var preparedStatements = PreparedStatementCache()

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Opens a connection to a libpq URI or key=value string.
    ///
    /// The session runs with `TimeZone=UTC`, `DateStyle=ISO`, `bytea_output=hex` and UTF-8 (the
    /// forms the decoders read), and `application_name=afterimage` unless the URI names one.
    /// Errors never contain the URI or its password. `connectTimeoutSeconds` below 2 is raised to 2
    /// (libpq's minimum; libpq's 0 would mean "wait forever"). `limits` bounds what the session may wait
    /// for (statements, locks, idle transactions, a dead peer); they win over the URI's own `options`.
    public static func connect(
        url: String, connectTimeoutSeconds: Int = 5,
        limits: SessionLimits = SessionLimits()
    ) throws(PQError) -> Connection {
        let parameters = ConnectionParameters(url: url, connectTimeoutSeconds: connectTimeoutSeconds, limits: limits)
        let handle = parameters.withCArrays { keywords, values in PQconnectdbParams(keywords, values, 1) }
        guard let handle else {
            throw PQError(code: .connectionFailed, message: "libpq could not allocate a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = SecretRedaction.redact(errorMessage(handle), conninfo: url)
            PQfinish(handle)  // libpq's rule: finish even a connection that failed
            throw PQError(code: .connectionFailed, message: message)
        }
        cpq_discard_notices(handle)
        return Connection(handle: handle)
    }

    /// True when libpq knows the connection is gone; such a connection is only good for `close()`.
    /// (A server that went away silently is noticed by the next statement, which throws
    /// `connectionLost`.)
    public var isBroken: Bool {
        guard let handle else { return true }
        return PQstatus(handle) != CONNECTION_OK
    }

    /// The server process serving this session (what `pg_terminate_backend` and NOTIFY senders see).
    public var backendPID: Int32 {
        guard let handle else { return 0 }
        return PQbackendPID(handle)
    }

    /// True while a transaction is open on this session (between BEGIN and COMMIT/ROLLBACK, or after a
    /// failed statement in it). A statement that changes a setting transaction-locally (`set_config(…, true)`)
    /// checks this first: inside a caller's transaction the setting would last until the caller's COMMIT.
    public var isInTransaction: Bool {
        guard let handle else { return false }
        return PQtransactionStatus(handle) != PQTRANS_IDLE
    }

    /// Ends the session. Safe to call twice; later calls on the connection throw `invalidUse`.
    public func close() {
        if let handle { PQfinish(handle) }
        handle = nil
        preparedStatements.removeAll()
    }

    /// The open handle, or `invalidUse` after `close()`.
    func liveHandle() throws(PQError) -> OpaquePointer {
        guard let handle else { throw PQError(code: .invalidUse, message: "the connection is closed") }
        return handle
    }

    /// libpq's last error text for a connection, trimmed; may name host and port, never a password
    /// (connection-time callers still pass it through `SecretRedaction`).
    static func errorMessage(_ handle: OpaquePointer) -> String {
        let text = PQerrorMessage(handle).map { String(cString: $0) } ?? ""
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? "unknown libpq error" : trimmed
    }
}
