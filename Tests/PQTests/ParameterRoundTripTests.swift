import Foundation
import PQ
import Testing

/// Every supported type goes to the server as a parameter and comes back equal.
@Suite struct ParameterRoundTripTests {
    /// `select $1::type`: the value travels as a parameter and is read back from text.
    private func roundTrip<T: PQEncodable & PQDecodable>(_ value: T, _ type: String, on connection: Connection) throws -> T {
        try #require(connection.query("select $1::\(type) as value", [value]).first).decode("value")
    }

    @Test func strings() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        for text in [
            "", "plain", "héllo wörld, 日本語, עברית, 🎉👩‍👩‍👧", "quote ' double \" backslash \\ percent %",
            "line\nbreak\ttab\r", "'; drop table users; --", "$1 $2 \\x00",
        ] {
            #expect(try roundTrip(text, "text", on: connection) == text)
        }
    }

    @Test func integers() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        for value in [Int.min, -1, 0, 1, Int.max] { #expect(try roundTrip(value, "int8", on: connection) == value) }
        for value in [Int64.min, 42, Int64.max] { #expect(try roundTrip(value, "int8", on: connection) == value) }
        for value in [Int32.min, 0, Int32.max] { #expect(try roundTrip(value, "int4", on: connection) == value) }
        // Typed parameters resolve without casts.
        #expect(try connection.query("select $1 + 1", [Int.max - 1]).first?.decode(0) == Int.max)
    }

    @Test func doubles() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        for value in [0.0, 0.1, -2.5, .pi, 1e-300, .leastNonzeroMagnitude, 1.7976931348623157e308, .infinity, -.infinity] {
            #expect(try roundTrip(value, "float8", on: connection) == value)
        }
        #expect(try roundTrip(Double.nan, "float8", on: connection).isNaN)
    }

    @Test func booleans() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        #expect(try roundTrip(true, "bool", on: connection) == true)
        #expect(try roundTrip(false, "bool", on: connection) == false)
    }

    @Test func timestampsKeepMicroseconds() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let date = Date(timeIntervalSince1970: 1_795_268_493.123456)
        let back = try roundTrip(date, "timestamptz", on: connection)
        #expect((back.timeIntervalSince1970 * 1e6).rounded() == 1_795_268_493_123_456)
        // The server saw exactly that instant, in UTC.
        let text: String = try #require(connection.query("select $1::timestamptz::text", [date]).first).decode(0)
        #expect(text == "2026-11-21 13:41:33.123456+00")
        // Server-made timestamps parse too, with and without a fraction, before 1970 and BC.
        let row = try #require(
            connection.query(
                """
                select '2026-11-21 13:41:33+00'::timestamptz, '1969-12-31 23:59:59.5+00'::timestamptz,
                       '0044-03-15 12:00:00+00 BC'::timestamptz, '2026-11-21 13:41:33.123456'::timestamp
                """
            ).first)
        #expect(try row.decode(0, as: Date.self).timeIntervalSince1970 == 1_795_268_493)
        #expect(try row.decode(1, as: Date.self).timeIntervalSince1970 == -0.5)
        let ides: Date = try row.decode(2)
        #expect(try roundTrip(ides, "timestamptz", on: connection) == ides)
        #expect(try (row.decode(3, as: Date.self).timeIntervalSince1970 * 1e6).rounded() == 1_795_268_493_123_456)
        // Exact microseconds where Date (a Double) can hold them, whole seconds at the far ends.
        for seconds in [
            0.0, -1.000001, 1_000_000_000.999999, 4_102_444_799.999999, 1_795_270_745.952_778,
            253_402_300_799, -62_135_596_800, -62_135_596_801,
        ] {
            let date = Date(timeIntervalSince1970: seconds)
            let back = try roundTrip(date, "timestamptz", on: connection)
            #expect((back.timeIntervalSince1970 * 1e6).rounded() == (seconds * 1e6).rounded())
        }
    }

    @Test func byteaWithEveryByteValue() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let all = (0...255).map { UInt8($0) }
        #expect(try roundTrip(all, "bytea", on: connection) == all)
        #expect(try roundTrip([UInt8](), "bytea", on: connection) == [])
        #expect(try connection.query("select length($1)", [all]).first?.decode(0) == 256)
    }

    @Test func uuidsAndJSON() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let uuid = UUID()
        #expect(try roundTrip(uuid, "uuid", on: connection) == uuid)
        let json = PQJSON(#"{"a": [1, 2.5, "é"], "b": null}"#)
        #expect(try roundTrip(json, "json", on: connection) == json)
        let jsonb: PQJSON = try roundTrip(json, "jsonb", on: connection)
        #expect(try connection.query("select $1::jsonb = $2::jsonb", [jsonb, json]).first?.decode(0) == true)
    }

    @Test func nullForEveryType() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        #expect(try roundTrip(String?.none, "text", on: connection) == nil)
        #expect(try roundTrip(Int?.none, "int8", on: connection) == nil)
        #expect(try roundTrip(Int32?.none, "int4", on: connection) == nil)
        #expect(try roundTrip(Int64?.none, "int8", on: connection) == nil)
        #expect(try roundTrip(Double?.none, "float8", on: connection) == nil)
        #expect(try roundTrip(Bool?.none, "bool", on: connection) == nil)
        #expect(try roundTrip(Date?.none, "timestamptz", on: connection) == nil)
        #expect(try roundTrip([UInt8]?.none, "bytea", on: connection) == nil)
        #expect(try roundTrip(UUID?.none, "uuid", on: connection) == nil)
        #expect(try roundTrip(PQJSON?.none, "jsonb", on: connection) == nil)
        #expect(try roundTrip(Optional("x"), "text", on: connection) == "x")
        // An untyped NULL and a typed NULL without a cast.
        let nulls: [any PQEncodable] = [PQValue.null, Int?.none]
        let row = try #require(try connection.query("select $1::text is null, $2 is null, $1::text", nulls).first)
        #expect(try row.decode(0, as: Bool.self) && row.decode(1, as: Bool.self))
        #expect(row.isNull(2))
    }

    @Test func everyTypeThroughATable() throws {
        try TestDatabase.withTable(
            """
            id bigserial primary key, s text, i int8, i4 int4, d float8, b bool, ts timestamptz, by bytea, u uuid, j jsonb
            """
        ) { connection, table in
            let date = Date(timeIntervalSince1970: 1_700_000_000.000001)
            let uuid = UUID()
            let bytes: [UInt8] = [0, 1, 92, 39, 255]
            let inserted = try connection.execute(
                "insert into \(table) (s, i, i4, d, b, ts, by, u, j) values ($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10, $11, $12, $13, $14, $15, $16, $17, $18)",
                [
                    "ünïcode", 7, Int32(-3), 2.25, true, date, bytes, uuid, PQJSON(#"{"k": "v"}"#),
                    String?.none, Int?.none, Int32?.none, Double?.none, Bool?.none, Date?.none, [UInt8]?.none, UUID?.none, PQJSON?.none,
                ])
            #expect(inserted == 2)
            let rows = try connection.query("select s, i, i4, d, b, ts, by, u, j from \(table) order by id")
            #expect(rows.count == 2)
            #expect(rows.columnNames == ["s", "i", "i4", "d", "b", "ts", "by", "u", "j"])
            let full = rows[0]
            #expect(full.columnCount == 9)
            #expect(try full.decode("s") == "ünïcode")
            #expect(try full.decode("i") == 7)
            #expect(try full.decode("i4") == Int32(-3))
            #expect(try full.decode("d") == 2.25)
            #expect(try full.decode("b") == true)
            #expect(try (full.decode("ts", as: Date.self).timeIntervalSince1970 * 1e6).rounded() == 1_700_000_000_000_001)
            #expect(try full.decode("by") == bytes)
            #expect(try full.decode("u") == uuid)
            #expect(try full.decode("j") == PQJSON(#"{"k": "v"}"#))
            let empty = rows[1]
            #expect(try empty.decode("s", as: String?.self) == nil)
            #expect(try empty.decode("i", as: Int?.self) == nil)
            #expect(try empty.decode("ts", as: Date?.self) == nil)
            #expect(try empty.decode("by", as: [UInt8]?.self) == nil)
            #expect(try empty.decode("j", as: PQJSON?.self) == nil)
            #expect(try connection.execute("update \(table) set s = $1", ["again"]) == 2)
        }
    }
}
