import Foundation
import PQ
import TestSupport
import Testing

@Suite struct ErrorTests {
    @Test func uniqueViolationCarriesSQLStateAndNoRowValues() throws {
        try TestDatabase.withTable("id int8 primary key, note text") { connection, table in
            try connection.execute("insert into \(table) (id, note) values ($1, $2)", [424_242, "secret-note"])
            do {
                try connection.execute("insert into \(table) (id, note) values ($1, $2)", [424_242, "secret-note"])
                Issue.record("a duplicate key was accepted")
            } catch let error as PQError {
                #expect(error.code == .queryFailed)
                #expect(error.sqlState == "23505")
                #expect(error.isUniqueViolation)
                #expect(error.constraintName == "\(table)_pkey")
                #expect(!error.description.contains("424242"), "DETAIL with the row's values leaked: \(error)")
            }
            // The connection stays usable after a failed statement.
            #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 1)
        }
    }

    @Test func injectionLookingStringsStayData() throws {
        try TestDatabase.withTable("id serial primary key, name text") { connection, table in
            let hostile = ["Robert'); drop table \(table); --", "' or '1'='1", "\\'; select pg_sleep(10); --", "$1"]
            for name in hostile { try connection.execute("insert into \(table) (name) values ($1)", [name]) }
            let names = try connection.query("select name from \(table) order by id").map { try $0.decode(0, as: String.self) }
            #expect(names == hostile)
            let matches = try connection.query("select count(*) from \(table) where name = $1", ["' or '1'='1"])
            #expect(try matches.first?.decode(0) == 1)
        }
    }

    @Test func syntaxErrorIsQueryFailedWithState() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        #expect {
            try connection.query("selec 1")
        } throws: { error in
            let error = try #require(error as? PQError)
            return error.code == .queryFailed && error.sqlState == "42601" && !connection.isBroken
        }
    }

    @Test func decodingFailuresAreErrorsNotGuesses() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let row = try #require(
            connection.query("select null::int8 as n, 3000000000::int8 as big, 'abc' as word, 99999999999999999999::numeric as huge").first)
        #expect(pqErrorCode { _ = try row.decode("n", as: Int.self) } == .decodingFailed)
        #expect(try row.decode("n", as: Int?.self) == nil)
        #expect(pqErrorCode { _ = try row.decode("big", as: Int32.self) } == .decodingFailed)
        #expect(try row.decode("big", as: Int64.self) == 3_000_000_000)
        #expect(pqErrorCode { _ = try row.decode("huge", as: Int.self) } == .decodingFailed)
        #expect(pqErrorCode { _ = try row.decode("word", as: Date.self) } == .decodingFailed)
        #expect(pqErrorCode { _ = try row.decode("word", as: UUID.self) } == .decodingFailed)
        #expect(pqErrorCode { _ = try row.decode("word", as: [UInt8].self) } == .decodingFailed)
        #expect(pqErrorCode { _ = try row.decode("missing", as: String.self) } == .decodingFailed)
        #expect(pqErrorCode { _ = try row.decode(9, as: String.self) } == .decodingFailed)
        do {
            _ = try row.decode("word", as: Bool.self)
        } catch {
            #expect(error.message.contains("word") && !error.message.contains("abc"))
        }
    }

    @Test func nulBytesInTextAreRefusedBeforeSending() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        #expect(pqErrorCode { try connection.query("select $1::text", ["a\u{0}b"]) } == .invalidParameter)
        #expect(try connection.query("select 1").count == 1)
    }

    @Test(arguments: [
        "postgresql://afterimage:Sup3rS3cretPa55@127.0.0.1:PORT/afterimage_dev",
        "postgresql://afterimage:Sup3rS3cretPa55@127.0.0.1:notaport/afterimage_dev",
        "postgresql://afterimage:Sup3rS3cretPa55@127.0.0.1:PORT/afterimage_dev?sslmode=bogus",
        "host=127.0.0.1 port=PORT user=afterimage password=Sup3rS3cretPa55 dbname=x",
        "host=127.0.0.1 port=PORT user=afterimage password='Sup3rS3cretPa55",
    ])
    func connectErrorsNeverContainThePassword(_ template: String) throws {
        let url = template.replacingOccurrences(of: "PORT", with: String(freePort()))
        do {
            let connection = try Connection.connect(url: url, connectTimeoutSeconds: 2)
            connection.close()
            Issue.record("connected to a closed port")
        } catch {
            #expect(error.code == .connectionFailed)
            #expect(!error.description.contains("Sup3rS3cretPa55"), "\(error)")
            #expect(!"\(error)".contains("Sup3rS3cretPa55"))
            #expect(!String(reflecting: error).contains("Sup3rS3cretPa55"))
        }
    }

    @Test func closedConnectionRefusesWork() throws {
        let connection = try TestDatabase.connect()
        #expect(!connection.isBroken)
        connection.close()
        connection.close()
        #expect(connection.isBroken)
        #expect(pqErrorCode { try connection.query("select 1") } == .invalidUse)
    }

    @Test func sessionSettingsAreApplied() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let row = try #require(
            connection.query(
                """
                select current_setting('TimeZone'), current_setting('DateStyle'), current_setting('bytea_output'),
                       current_setting('application_name'), current_setting('client_encoding')
                """
            ).first)
        #expect(try row.decode(0) == "UTC")
        #expect(try row.decode(1, as: String.self).hasPrefix("ISO"))
        #expect(try row.decode(2) == "hex")
        #expect(try row.decode(3) == "afterimage")
        #expect(try row.decode(4) == "UTF8")
        // A URI's own application_name and options are kept; ours still win for the time zone.
        let url = try TestDatabase.url()
        let custom = try Connection.connect(
            url: url + (url.contains("?") ? "&" : "?")
                + "application_name=pq-test&options=-c%20TimeZone%3DEurope/Paris%20-c%20statement_timeout%3D12345")
        defer { custom.close() }
        let settings = try #require(
            custom.query("select current_setting('application_name'), current_setting('TimeZone'), current_setting('statement_timeout')").first)
        #expect(try settings.decode(0) == "pq-test")
        #expect(try settings.decode(1) == "UTC")
        #expect(try settings.decode(2) == "12345ms")
    }

    @Test func executeScriptRunsSeveralStatements() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let table = TestDatabase.uniqueName("pq_script")
        try connection.executeScript(
            """
            create table \(table) (id int primary key);
            insert into \(table) values (1), (2);
            insert into \(table) values (3);
            """)
        defer { _ = try? connection.execute("drop table \(table)") }
        #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 3)
        // A failing statement fails the script, whose statements share one implicit transaction.
        #expect(pqErrorCode { try connection.executeScript("insert into \(table) values (4); insert into \(table) values (1);") } == .queryFailed)
        #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 3)
    }
}
