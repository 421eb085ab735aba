import Foundation
import PQ
import TestSupport
import Testing

@Suite("Session deadlines and the admitting pool")
struct SessionLimitsTests {
    func limits(statement: Int = 0, lock: Int = 0, idle: Int = 0, tcp: Int = 0) -> SessionLimits {
        var limits = SessionLimits()
        limits.statementTimeoutMilliseconds = statement
        limits.lockTimeoutMilliseconds = lock
        limits.idleInTransactionTimeoutMilliseconds = idle
        limits.tcpUserTimeoutMilliseconds = tcp
        return limits
    }

    @Test("the limits are the session's settings from its first statement, and win over the URI's options")
    func appliedAtConnect() throws {
        let url = try TestDatabase.url()
        let withOptions = url + (url.contains("?") ? "&" : "?") + "options=-c%20statement_timeout%3D12345"
        let connection = try Connection.connect(url: withOptions, limits: limits(statement: 1500, lock: 700, idle: 9000, tcp: 4000))
        defer { connection.close() }
        let row = try #require(
            connection.query(
                """
                select current_setting('statement_timeout'), current_setting('lock_timeout'),
                       current_setting('idle_in_transaction_session_timeout')
                """
            ).first)
        #expect(try row.decode(0) == "1500ms")
        #expect(try row.decode(1) == "700ms")
        #expect(try row.decode(2) == "9s")
    }

    @Test("statement_timeout and lock_timeout fire, and say 'unavailable' (retry later)")
    func deadlinesFire() throws {
        let connection = try Connection.connect(url: try TestDatabase.url(), limits: limits(statement: 200))
        defer { connection.close() }
        do {
            try connection.query("select pg_sleep(5)")
            Issue.record("pg_sleep(5) outlived statement_timeout = 200 ms")
        } catch {
            #expect(error.sqlState == "57014")
            #expect(error.isUnavailable)
        }
        let waiter = try Connection.connect(url: try TestDatabase.url(), limits: limits(lock: 200))
        defer { waiter.close() }
        try TestDatabase.withTable("id int") { holder, table in
            try holder.execute("begin")
            try holder.execute("lock table \(table) in access exclusive mode")
            defer { _ = try? holder.execute("rollback") }
            let began = ContinuousClock.now
            do {
                try waiter.query("select count(*) from \(table)")
                Issue.record("a locked table was read")
            } catch let error as PQError {
                #expect(error.sqlState == "55P03")
                #expect(error.isUnavailable)
            } catch {
                Issue.record("unexpected \(error)")
            }
            #expect(ContinuousClock.now - began < .seconds(3))
        }
        // Other failures are the request's, not the database's availability.
        #expect(!PQError(code: .queryFailed, message: "x", sqlState: "23505").isUnavailable)
        #expect(!PQError(code: .queryFailed, message: "x", sqlState: "42601").isUnavailable)
        #expect(PQError(code: .poolTimeout, message: "x").isUnavailable)
    }

    @Test("a pool made not admitting refuses at once, without connecting, until told to admit")
    func admittingPool() throws {
        // Port 1 would refuse a connection; the message shows no connection was even tried.
        let closed = Pool(url: "postgresql://nobody@127.0.0.1:1/none", size: 2, admitting: false)
        #expect(!closed.isAdmitting)
        do {
            try closed.withConnection { _ in }
            Issue.record("a pool that does not admit lent a connection")
        } catch let error as PQError {
            #expect(error.code == .connectionFailed)
            #expect(error.isUnavailable)
            #expect(error.message.contains("not ready"))
        } catch {
            Issue.record("unexpected \(error)")
        }
        let pool = Pool(url: try TestDatabase.url(), size: 2, admitting: false)
        defer { pool.close() }
        #expect(throws: PQError.self) { try pool.withConnection { _ in } }
        pool.startAdmitting()
        #expect(try pool.withConnection { try $0.query("select 1").first?.decode(0, as: Int.self) } == 1)
    }
}
