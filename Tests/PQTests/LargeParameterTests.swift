import Foundation
import PQ
import TestSupport
import Testing

/// Parameters of 16 KiB and more go to libpq from their own storage rather than a staging copy; what the
/// server receives must not change, whatever mix of sizes, NULLs and statements (plain or prepared).
@Suite("PQ large parameters")
struct LargeParameterTests {
    static func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    @Test func largeAndSmallValuesInOneStatementArriveIntact() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let big = Self.bytes(3 << 20, seed: 7)
        let edge = Self.bytes(16 * 1024, seed: 9)  // exactly the threshold
        let below = Self.bytes(16 * 1024 - 1, seed: 11)
        let text = String(repeating: "añ€", count: 20_000)  // 120 KB of multi-byte UTF-8
        let sql = "select $1::bytea, length($1::bytea), $2::bytea, $3::bytea, $4::text, $5::text = $6, length($5::text), $7::bytea is null"
        let parameters: [any PQEncodable] = [big, edge, below, "small", text, text, [UInt8]?.none]
        for prepared in [false, true] {
            let row = try (prepared ? connection.query(prepared: sql, parameters) : connection.query(sql, parameters))[0]
            #expect(try row.decode(0, as: [UInt8].self) == big)
            #expect(try row.decode(1, as: Int.self) == big.count)
            #expect(try row.decode(2, as: [UInt8].self) == edge)
            #expect(try row.decode(3, as: [UInt8].self) == below)
            #expect(try row.decode(4, as: String.self) == "small")
            #expect(try row.decode(5, as: Bool.self))
            #expect(try row.decode(6, as: Int.self) == 60_000)
            #expect(try row.decode(7, as: Bool.self))
        }
    }

    @Test func aLargeValueRoundTripsThroughATable() throws {
        try TestDatabase.withTable("id int primary key, body bytea not null") { connection, table in
            let body = Self.bytes(5 << 20, seed: 3)
            try connection.execute("insert into \(table) values (1, $1)", [body])
            #expect(try connection.query("select body from \(table) where id = 1")[0].decode(0, as: [UInt8].self) == body)
        }
    }

    @Test func aLargeTextWithNULIsStillRefused() throws {
        let connection = try TestDatabase.connect()
        defer { connection.close() }
        let text = String(repeating: "a", count: 20_000) + "\u{0}" + "b"
        #expect(pqErrorCode { _ = try connection.query("select $1::text", [text]) } == .invalidParameter)
    }
}
