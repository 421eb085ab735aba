import PQ
import Testing

private struct BodyFailed: Error, Equatable {}

@Suite struct TransactionTests {
    @Test func commitMakesRowsVisibleToOthers() throws {
        try TestDatabase.withTable("id int primary key") { connection, table in
            let other = try TestDatabase.connect()
            defer { other.close() }
            let value = try connection.transaction { transaction in
                try transaction.execute("insert into \(table) values ($1)", [1])
                // Not visible outside before COMMIT.
                #expect(try other.query("select count(*) from \(table)").first?.decode(0) == 0)
                return "done"
            }
            #expect(value == "done")
            #expect(try other.query("select count(*) from \(table)").first?.decode(0) == 1)
        }
    }

    @Test func thrownErrorRollsBackAndIsRethrown() throws {
        try TestDatabase.withTable("id int primary key") { connection, table in
            #expect(throws: BodyFailed()) {
                try connection.transaction { transaction in
                    try transaction.execute("insert into \(table) values ($1)", [1])
                    throw BodyFailed()
                }
            }
            #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 0)
            // The connection is out of the transaction and usable.
            _ = try connection.transaction { try $0.execute("insert into \(table) values (2)") }
            #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 1)
        }
    }

    @Test func swallowedStatementErrorStillRollsBack() throws {
        try TestDatabase.withTable("id int primary key") { connection, table in
            let error = #expect(throws: PQError.self) {
                try connection.transaction { transaction in
                    try transaction.execute("insert into \(table) values (1)")
                    _ = try? transaction.execute("insert into \(table) values (1)")  // unique violation, ignored
                }
            }
            #expect(error?.sqlState == "25P02")
            let count: Int? = try connection.query("select count(*) from \(table)").first?.decode(0)
            #expect(count == 0)
        }
    }

    @Test func nestedTransactionIsRefused() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let error = #expect(throws: PQError.self) {
            try connection.transaction { transaction in
                try transaction.transaction { _ in }
            }
        }
        #expect(error?.code == .invalidUse)
        #expect(try connection.query("select 1").count == 1)
    }
}
