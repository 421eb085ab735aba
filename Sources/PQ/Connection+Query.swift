import CLibPQ
import Glibc

extension Connection {
    /// Runs one statement with parameters bound separately from the SQL text (PQexecParams), so a
    /// parameter is always data. Results come back in text format and are copied out at once.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PQEncodable] = []) throws(PQError) -> QueryResult {
        let handle = try liveHandle()
        try Self.checkNoNUL(sql, what: "the SQL text")
        let result = try Self.withParameters(parameters) { layout in
            PQexecParams(handle, sql, layout.count, layout.types, layout.values, layout.lengths, layout.formats, 0)
        }
        return try consume(result, handle: handle)
    }

    /// Runs one statement and returns the rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any PQEncodable] = []) throws(PQError) -> Int {
        try query(sql, parameters).rowsAffected
    }

    /// Runs several statements in one string (PQexec, simple protocol, no parameters).
    ///
    /// ONLY for trusted SQL shipped with the program, such as migration files: nothing in it is
    /// escaped, so it must never contain text that came from outside.
    public func executeScript(_ sql: String) throws(PQError) {
        let handle = try liveHandle()
        try Self.checkNoNUL(sql, what: "the script")
        _ = try consume(PQexec(handle, sql), handle: handle)
    }

    /// Runs `body` inside BEGIN/COMMIT. If `body` throws, the transaction is rolled back and the
    /// original error is rethrown. If a statement failed inside `body` but `body` caught the error,
    /// the transaction is rolled back and this throws (PostgreSQL would otherwise turn the COMMIT
    /// into a silent ROLLBACK). Not reentrant: a nested call throws `invalidUse`.
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        let handle = try liveHandle()
        guard PQtransactionStatus(handle) == PQTRANS_IDLE else {
            throw PQError(code: .invalidUse, message: "a transaction is already open on this connection")
        }
        try query("BEGIN")
        let value: T
        do {
            value = try body(self)
        } catch {
            rollbackQuietly()
            throw error
        }
        if PQtransactionStatus(handle) == PQTRANS_INERROR {
            rollbackQuietly()
            throw PQError(
                code: .queryFailed, message: "a statement in the transaction failed; it was rolled back",
                sqlState: "25P02")
        }
        try query("COMMIT")
        return value
    }

    /// Ends a failed transaction; its own failure is ignored because the caller is already
    /// reporting the error that matters (and a lost connection ends the transaction anyway).
    func rollbackQuietly() {
        _ = try? query("ROLLBACK")
    }

    /// Makes a connection safe to hand to the next user: rolls back a transaction left open.
    /// False when it cannot be reused.
    func resetForReuse() -> Bool {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return false }
        switch PQtransactionStatus(handle) {
        case PQTRANS_IDLE: return true
        case PQTRANS_INTRANS, PQTRANS_INERROR:
            rollbackQuietly()
            return PQstatus(handle) == CONNECTION_OK && PQtransactionStatus(handle) == PQTRANS_IDLE
        default: return false
        }
    }

    /// libpq takes text as C strings, so a NUL would silently cut the value short. Native strings are scanned
    /// with memchr over their contiguous UTF-8 (intake sends 10 KB-sized parameters many times a second; a
    /// byte-by-byte `contains` showed in its profile); bridged ones fall back to the iterator.
    static func checkNoNUL(_ text: String, what: String) throws(PQError) {
        let found =
            text.utf8.withContiguousStorageIfAvailable { buffer in
                guard let base = buffer.baseAddress, !buffer.isEmpty else { return false }
                return memchr(base, 0, buffer.count) != nil
            } ?? text.utf8.contains(0)
        if found {
            throw PQError(code: .invalidParameter, message: "\(what) contains a NUL byte")
        }
    }

    /// Turns a `PGresult` into a `QueryResult` or a `PQError`, and always clears it.
    func consume(_ result: OpaquePointer?, handle: OpaquePointer) throws(PQError) -> QueryResult {
        guard let result else {
            // NULL: out of memory, or the command could not even be sent.
            throw PQError(
                code: PQstatus(handle) == CONNECTION_OK ? .queryFailed : .connectionLost,
                message: Self.errorMessage(handle))
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return QueryResult(copying: result)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            abandonCopy(status, handle: handle)
            throw PQError(code: .invalidUse, message: "COPY is not supported by PQ")
        default:
            throw Self.serverError(result, handle: handle)
        }
    }

    /// The error of a failed result. Lost connections are told apart from rejected statements so
    /// the pool can replace connections: SQLSTATE class 08 (connection exception), 57P01–57P03
    /// (the server is shutting down or starting), or a connection libpq has marked bad.
    static func serverError(_ result: OpaquePointer, handle: OpaquePointer) -> PQError {
        let sqlState = field(result, CPQ_DIAG_SQLSTATE)
        let message =
            field(result, CPQ_DIAG_MESSAGE_PRIMARY)
            ?? {
                let text = PQresultErrorMessage(result).map { String(cString: $0) } ?? ""
                let trimmed = text.split(separator: "\n").first.map(String.init) ?? ""
                return trimmed.isEmpty ? errorMessage(handle) : trimmed
            }()
        let lost =
            PQstatus(handle) != CONNECTION_OK
            || sqlState?.hasPrefix("08") == true
            || ["57P01", "57P02", "57P03"].contains(sqlState)
        return PQError(
            code: lost ? .connectionLost : .queryFailed, message: message, sqlState: sqlState,
            constraintName: field(result, CPQ_DIAG_CONSTRAINT_NAME))
    }

    private static func field(_ result: OpaquePointer, _ code: Int) -> String? {
        PQresultErrorField(result, Int32(code)).map { String(cString: $0) }
    }

    /// Leaves a COPY state a statement put us in, so the connection stays usable: COPY IN is
    /// ended with an error, COPY OUT is read to its end, anything else closes the connection.
    private func abandonCopy(_ status: ExecStatusType, handle: OpaquePointer) {
        switch status {
        case PGRES_COPY_IN:
            _ = PQputCopyEnd(handle, "COPY is not supported by PQ")
        case PGRES_COPY_OUT:
            while true {
                var buffer: UnsafeMutablePointer<CChar>?
                let count = PQgetCopyData(handle, &buffer, 0)
                if let buffer { PQfreemem(buffer) }
                if count < 0 { break }
            }
        default:
            close()
            return
        }
        while let next = PQgetResult(handle) { PQclear(next) }
    }
}
