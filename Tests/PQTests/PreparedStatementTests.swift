import Foundation
import PQ
import TestSupport
import Testing

/// `query(prepared:)`: parsed once per session, keyed by SQL text and parameter types, recovered when the
/// server forgets or invalidates a statement, bounded per connection.
@Suite("PQ prepared statements")
struct PreparedStatementTests {
    /// Statements this session holds on the server whose text is `sql`.
    func serverCount(_ connection: Connection, _ sql: String) throws -> Int {
        try connection.query("select count(*)::int8 from pg_prepared_statements where statement = $1", [sql])[0].decode(0)
    }

    @Test func preparedOnceThenReusedWithTheSameResultsAsUnprepared() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let sql = "select $1::int8 * 2, $2::text || '!', $3::bytea"
        for value in [1, 2, 300] {
            let prepared = try connection.query(prepared: sql, [value, "v\(value)", [UInt8(value & 0xFF), 0, 255]])
            let plain = try connection.query(sql, [value, "v\(value)", [UInt8(value & 0xFF), 0, 255]])
            #expect(try prepared[0].decode(0, as: Int64.self) == Int64(value * 2))
            #expect(try prepared[0].decode(1, as: String.self) == "v\(value)!")
            #expect(try prepared[0].decode(2, as: [UInt8].self) == [UInt8(value & 0xFF), 0, 255])
            #expect(try prepared[0].decode(0, as: Int64.self) == plain[0].decode(0, as: Int64.self))
        }
        #expect(connection.preparedStatementCount == 1)
        #expect(try serverCount(connection, sql) == 1)
        // NULL parameters keep their declared type and reuse the statement.
        let withNull = try connection.query(prepared: sql, [Int?.none, String?.none, [UInt8]?.none])
        #expect(withNull[0].isNull(0) && withNull[0].isNull(1) && withNull[0].isNull(2))
        #expect(connection.preparedStatementCount == 1)
    }

    @Test func otherParameterTypesAreAnotherStatement() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let sql = "select $1"
        #expect(try connection.query(prepared: sql, [Int64(7)])[0].decode(0, as: String.self) == "7")
        #expect(try connection.query(prepared: sql, ["seven"])[0].decode(0, as: String.self) == "seven")
        #expect(connection.preparedStatementCount == 2)
    }

    @Test func aStatementTheServerForgotIsPreparedAgain() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let sql = "select $1::int4 + 1"
        #expect(try connection.query(prepared: sql, [Int32(1)])[0].decode(0, as: Int.self) == 2)
        try connection.execute("DISCARD ALL")
        #expect(try serverCount(connection, sql) == 0)
        #expect(try connection.query(prepared: sql, [Int32(2)])[0].decode(0, as: Int.self) == 3)
        #expect(try serverCount(connection, sql) == 1)
    }

    @Test func aFunctionWhoseResultTypeChangedIsPreparedAgain() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let function = TestDatabase.uniqueName("pq_fn")
        try connection.execute("create function \(function)(x int) returns table (a int) language sql as $$ select x $$")
        defer { _ = try? connection.execute("drop function if exists \(function)(int)") }
        let sql = "select * from \(function)($1)"
        #expect(try connection.query(prepared: sql, [Int32(5)]).columnNames == ["a"])
        try connection.executeScript(
            """
            drop function \(function)(int);
            create function \(function)(x int) returns table (a int, b text) language sql as $$ select x, 'b' $$;
            """)
        let after = try connection.query(prepared: sql, [Int32(6)])
        #expect(after.columnNames == ["a", "b"])
        #expect(try after[0].decode(1, as: String.self) == "b")
        #expect(try serverCount(connection, sql) == 1, "the stale statement was not deallocated")
    }

    @Test func insideATransactionAStaleStatementFailsAndIsNotRetried() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let sql = "select $1::int4"
        _ = try connection.query(prepared: sql, [Int32(1)])
        try connection.execute("DEALLOCATE ALL")
        let code = pqErrorCode {
            try connection.transaction { tx in _ = try tx.query(prepared: sql, [Int32(2)]) }
        }
        #expect(code == .queryFailed)
        // The connection is usable and the statement comes back outside the transaction.
        #expect(try connection.query(prepared: sql, [Int32(3)])[0].decode(0, as: Int.self) == 3)
    }

    @Test func aBadStatementIsAnErrorAndNotCached() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        do {
            _ = try connection.query(prepared: "selec $1", [Int64(1)])
            Issue.record("a syntax error was accepted")
        } catch let error as PQError {
            #expect(error.code == .queryFailed)
            #expect(error.sqlState == "42601")
        }
        #expect(connection.preparedStatementCount == 0)
        #expect(try connection.query(prepared: "select 1")[0].decode(0, as: Int.self) == 1)
    }

    @Test func beyondTheCapacityStatementsRunUnprepared() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        for index in 0..<70 {
            #expect(try connection.query(prepared: "select \(index) + $1::int4", [Int32(1)])[0].decode(0, as: Int.self) == index + 1)
        }
        #expect(connection.preparedStatementCount == 64)
        #expect(try connection.query("select count(*)::int8 from pg_prepared_statements")[0].decode(0, as: Int.self) == 64)
    }

    @Test func aReplacedPoolConnectionStartsWithNoStatements() throws {
        let pool = Pool(url: try TestDatabase.url(), size: 1)
        defer { pool.close() }
        let sql = "select pg_backend_pid()::int8 + $1::int8 * 0"
        let first = try pool.withConnection { connection -> Int32 in
            _ = try connection.query(prepared: sql, [Int64(1)])
            #expect(connection.preparedStatementCount == 1)
            return connection.backendPID
        }
        let killer = try TestDatabase.connect()
        defer { killer.close() }
        try killer.execute("select pg_terminate_backend($1::int4)", [first])
        try waitUntil(timeout: .seconds(10), "the backend to exit") {
            try killer.query("select count(*)::int8 from pg_stat_activity where pid = $1::int4", [first])[0].decode(0, as: Int.self) == 0
        }
        // The pool may lose one call to the dead connection; the next one gets a new session.
        var answer: (pid: Int32, count: Int)?
        for _ in 0..<3 where answer == nil {
            answer = try? pool.withConnection { connection in
                _ = try connection.query(prepared: sql, [Int64(1)])
                return (connection.backendPID, connection.preparedStatementCount)
            }
        }
        let replaced = try #require(answer)
        #expect(replaced.pid != first)
        #expect(replaced.count == 1)
    }
}
