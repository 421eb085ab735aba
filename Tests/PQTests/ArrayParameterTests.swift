import Foundation
import PQ
import TestSupport
import Testing

/// `PQArray` writes array_recv's binary format by hand: every element type, NULLs, empty values, empty arrays,
/// multi-byte text and bytes with 0x00 must reach the server exactly, which only the server can tell us.
@Suite("PQ binary array parameters")
struct ArrayParameterTests {
    /// Each element back from `unnest ... WITH ORDINALITY`, in order, as text (nil for NULL).
    static func elements(
        _ array: some PQEncodable, as type: String, on connection: Connection,
        prepared: Bool = false
    ) throws -> [String?] {
        let sql = "select x::text from unnest($1::\(type)[]) with ordinality as t(x, n) order by n"
        let rows = try prepared ? connection.query(prepared: sql, [array]) : connection.query(sql, [array])
        return try rows.map { try $0.decode(0, as: String?.self) }
    }

    @Test func textWithNULLsEmptyStringsAndNonASCIIArrivesExactly() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let values: [String?] = ["plain", nil, "", "añ€😀", "comma,{brace}\"quote\"\\", nil, "NULL", String(repeating: "x", count: 70_000)]
        let array = try PQArray(values)
        #expect(array.count == values.count)
        for prepared in [false, true] {
            #expect(try Self.elements(array, as: "text", on: connection, prepared: prepared) == values)
        }
        let row = try connection.query(
            "select array_ndims($1::text[]), array_lower($1::text[], 1), cardinality($1::text[]), array_position($1::text[], NULL)", [array])[0]
        #expect(try row.decode(0, as: Int.self) == 1)
        #expect(try row.decode(1, as: Int.self) == 1)
        #expect(try row.decode(2, as: Int.self) == values.count)
        #expect(try row.decode(3, as: Int.self) == 2)
        // And the array as a whole, in PostgreSQL's own text form.
        let small = try PQArray<String>(["a", nil, "", "b c"])
        #expect(try connection.query("select $1::text[]::text", [small])[0].decode(0, as: String.self) == #"{a,NULL,"","b c"}"#)
    }

    @Test func byteaKeepsZeroBytesAndTellsEmptyFromNULL() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let values: [[UInt8]?] = [[0, 1, 0, 255], [], nil, Array(repeating: 0, count: 5), (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }]
        let array = try PQArray(values)
        let rows = try connection.query("select x, x is null from unnest($1::bytea[]) with ordinality as t(x, n) order by n", [array])
        #expect(rows.count == values.count)
        for (row, expected) in zip(rows, values) {
            #expect(try row.decode(0, as: [UInt8]?.self) == expected)
            #expect(try row.decode(1, as: Bool.self) == (expected == nil))
        }
    }

    @Test func integersAndBooleansIncludingExtremes() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let int8s: [Int64?] = [0, -1, Int64.max, Int64.min, nil, 1_700_000_000_000_000]
        #expect(try Self.elements(PQArray(int8s), as: "int8", on: connection) == int8s.map { $0.map(String.init) })
        let int4s: [Int32?] = [Int32.min, nil, 0, 7, Int32.max]
        #expect(try Self.elements(PQArray(int4s), as: "int4", on: connection) == int4s.map { $0.map(String.init) })
        let bools: [Bool?] = [true, false, nil, true]
        #expect(try Self.elements(PQArray(bools), as: "bool", on: connection) == ["true", "false", nil, "true"])
    }

    @Test func emptyArraysAndArraysOfOnlyNULLs() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let empty = PQArray<String>()
        let row = try connection.query(
            "select cardinality($1::text[]), $1::text[] = '{}', $2::int8[]::text, $3::bool[]::text",
            [empty, try PQArray<Int64>([nil, nil]), PQArray<Bool>()])[0]
        #expect(try row.decode(0, as: Int.self) == 0)
        #expect(try row.decode(1, as: Bool.self))
        #expect(try row.decode(2, as: String.self) == "{NULL,NULL}")
        #expect(try row.decode(3, as: String.self) == "{}")
    }

    @Test func severalArraysUnnestIntoRowsOfATable() throws {
        try TestDatabase.withTable("id text primary key, body bytea, n int4, at int8, ok bool") { connection, table in
            let ids = try PQArray<String>(["a", "b", "c"])
            let bodies = try PQArray<[UInt8]>([[0], nil, [1, 2]])
            let ns = try PQArray<Int32>([1, 2, nil])
            let ats = try PQArray<Int64>([nil, 5, 6])
            let oks = try PQArray<Bool>([true, nil, false])
            let sql = "insert into \(table) select * from unnest($1::text[], $2::bytea[], $3::int4[], $4::int8[], $5::bool[])"
            #expect(try connection.query(prepared: sql, [ids, bodies, ns, ats, oks]).rowsAffected == 3)
            let rows = try connection.query("select id, body, n, at, ok from \(table) order by id")
            #expect(try rows.map { try $0.decode(0, as: String.self) } == ["a", "b", "c"])
            #expect(try rows.map { try $0.decode(1, as: [UInt8]?.self) } == [[0], nil, [1, 2]])
            #expect(try rows.map { try $0.decode(2, as: Int?.self) } == [1, 2, nil])
            #expect(try rows.map { try $0.decode(3, as: Int64?.self) } == [nil, 5, 6])
            #expect(try rows.map { try $0.decode(4, as: Bool?.self) } == [true, nil, false])
        }
    }

    @Test func aTextElementWithNULIsRefusedBeforeSending() {
        var array = PQArray<String>()
        #expect(pqErrorCode { try array.append("a\u{0}b") } == .invalidParameter)
        #expect(pqErrorCode { try array.append(String(repeating: "y", count: 20_000) + "\u{0}") } == .invalidParameter)
        #expect(pqErrorCode { try array.append("fine") } == nil)
    }

    @Test func aTypedArrayCastsLikeAnyOtherValue() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        // The parameter arrives typed int8[]; casting it to text[] goes through the server's own conversion.
        let row = try connection.query("select $1::int8[]::text[]::text", [try PQArray<Int64>([1, nil])])[0]
        #expect(try row.decode(0, as: String.self) == "{1,NULL}")
    }
}
