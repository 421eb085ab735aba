import CLibPQ

extension Connection {
    /// Runs one statement like `query(_:_:)`, but has the server parse and analyse it once per session
    /// (PQprepare) and only bind and execute it afterwards (PQexecPrepared), one round trip as before.
    ///
    /// For the statements a program sends over and over (a lookup API's queries): parsing and planning
    /// a join costs the server more than running it. The statement is keyed by its SQL text and its
    /// parameter types, so pass fixed SQL (never text built from values; those go in `parameters`).
    /// After `PreparedStatementCache.capacity` distinct statements on one connection, further ones run
    /// unprepared. A statement the server no longer knows (after `DISCARD ALL`) or whose result type
    /// changed (a migration replaced a function it calls) is prepared again and retried once, outside
    /// transactions.
    @discardableResult
    public func query(prepared sql: String, _ parameters: [any PQEncodable] = []) throws(PQError) -> QueryResult {
        let handle = try liveHandle()
        try Self.checkNoNUL(sql, what: "the SQL text")
        var retried = false
        while true {
            let outcome: Result<QueryResult, PQError> = try Self.withParameters(parameters) { layout in
                let key = PreparedStatementCache.Key(sql: sql, types: layout.types)
                let name: String
                if let known = preparedStatements.name(for: key) {
                    name = known
                } else if preparedStatements.isFull {
                    return Result { () throws(PQError) in
                        try consume(
                            PQexecParams(
                                handle, sql, layout.count, layout.types, layout.values, layout.lengths,
                                layout.formats, 0), handle: handle)
                    }
                } else {
                    let fresh = preparedStatements.nextName()
                    do throws(PQError) {
                        _ = try consume(PQprepare(handle, fresh, sql, layout.count, layout.types), handle: handle)
                    } catch {
                        return .failure(error)
                    }
                    preparedStatements.insert(fresh, for: key)
                    name = fresh
                }
                return Result { () throws(PQError) in
                    try consume(
                        PQexecPrepared(handle, name, layout.count, layout.values, layout.lengths, layout.formats, 0),
                        handle: handle)
                }
            }
            switch outcome {
            case .success(let result):
                return result
            case .failure(let error):
                guard !retried, Self.isStalePreparedStatement(error) else { throw error }
                let key = try Self.withParameters(parameters) { PreparedStatementCache.Key(sql: sql, types: $0.types) }
                let stale = preparedStatements.remove(key)
                // Inside a transaction the error has aborted it: a retry cannot succeed, the caller decides.
                guard PQtransactionStatus(handle) == PQTRANS_IDLE else { throw error }
                if let stale, error.sqlState != "26000" { _ = try? query("DEALLOCATE \(stale)") }
                retried = true
            }
        }
    }

    /// 26000: the session has no such prepared statement (DISCARD ALL, DEALLOCATE by someone else);
    /// 0A000 "cached plan must not change result type": a table or function it reads changed shape.
    static func isStalePreparedStatement(_ error: PQError) -> Bool {
        error.code == .queryFailed
            && (error.sqlState == "26000" || (error.sqlState == "0A000" && error.message.contains("cached plan")))
    }

    /// How many statements this connection has prepared (for tests and diagnostics).
    public var preparedStatementCount: Int { preparedStatements.count }
}

/// The statements one session has prepared, by SQL text and parameter types. Owned by its `Connection`,
/// so used by one thread at a time like the connection itself.
struct PreparedStatementCache {
    struct Key: Hashable {
        let sql: String
        let types: [Oid]
    }

    /// Bounds the server-side memory a connection holds in prepared statements; programs prepare a
    /// handful of fixed statements, and anything beyond this runs unprepared.
    static let capacity = 64

    private var names: [Key: String] = [:]
    private var counter = 0

    var count: Int { names.count }
    var isFull: Bool { names.count >= Self.capacity }

    func name(for key: Key) -> String? { names[key] }

    /// Names are unique within the session, so a statement prepared again never collides with one the
    /// server may still hold.
    mutating func nextName() -> String {
        counter += 1
        return "pq_stmt_\(counter)"
    }

    mutating func insert(_ name: String, for key: Key) { names[key] = name }

    @discardableResult
    mutating func remove(_ key: Key) -> String? { names.removeValue(forKey: key) }

    mutating func removeAll() { names.removeAll() }
}
