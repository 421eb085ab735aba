import Foundation
import PQ
import TestSupport
import Testing

/// `COPY … FROM STDIN (FORMAT binary)` fed in pieces: what the server stores is exactly what was sent,
/// a feed that fails leaves nothing and a usable session, and a unique violation says which constraint.
@Suite("PQ COPY FROM STDIN")
struct CopyTests {
    static let columns = "id bigint primary key, name text, note text, at timestamptz, payload bytea not null"

    @Test func binaryRowsWithAStreamedByteaArriveIntact() throws {
        try TestDatabase.withTable(Self.columns) { (connection: Connection, table: String) throws in
            let payload = (0..<(3 << 20 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
            let at = Date(timeIntervalSince1970: 1_764_000_000.123456)
            let copied = try connection.copyIn("COPY \(table) (id, name, note, at, payload) FROM STDIN (FORMAT binary)") { copy in
                var row = BinaryCopyEncoder()
                row.header()
                row.row(fields: 5)
                row.int64(42)
                try row.text("añ€ name")
                row.null()
                row.timestamp(at)
                try row.fieldLength(payload.count)
                try copy.write(row.take())
                // The bytea in uneven pieces, as a file would give it.
                var offset = 0
                while offset < payload.count {
                    let end = min(payload.count, offset + 100_003)
                    try payload[offset..<end].withUnsafeBytes { try copy.write($0) }
                    offset = end
                }
                row.row(fields: 5)
                row.int64(43)
                try row.text(nil)
                try row.text("")
                row.timestamp(nil)
                try row.fieldLength(0)
                row.trailer()
                try copy.write(row.take())
            }
            #expect(copied == 2)
            let first = try connection.query(
                "SELECT name, note IS NULL, extract(epoch FROM at)::float8, payload, length(payload) FROM \(table) WHERE id = 42")[0]
            #expect(try first.decode(0, as: String.self) == "añ€ name")
            #expect(try first.decode(1, as: Bool.self))
            #expect(abs(try first.decode(2, as: Double.self) - 1_764_000_000.123456) < 0.000_002)
            #expect(try first.decode(3, as: [UInt8].self) == payload)
            #expect(try first.decode(4, as: Int.self) == payload.count)
            let second = try connection.query("SELECT name IS NULL, note, at IS NULL, length(payload) FROM \(table) WHERE id = 43")[0]
            #expect(try second.decode(0, as: Bool.self))
            #expect(try second.decode(1, as: String.self) == "")
            #expect(try second.decode(2, as: Bool.self))
            #expect(try second.decode(3, as: Int.self) == 0)
        }
    }

    struct FeedFailed: Error {}

    @Test func aFailingFeedKeepsNothingAndTheSessionGoesOn() throws {
        try TestDatabase.withTable(Self.columns) { (connection: Connection, table: String) throws in
            #expect(throws: FeedFailed.self) {
                try connection.copyIn("COPY \(table) (id, payload) FROM STDIN (FORMAT binary)") { copy in
                    var row = BinaryCopyEncoder()
                    row.header()
                    row.row(fields: 2)
                    row.int64(1)
                    try row.fieldLength(10)
                    try copy.write(row.take())
                    throw FeedFailed()
                }
            }
            #expect(try connection.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 0)
            // Inside a transaction, the failure aborts it; the transaction helper rolls back.
            #expect(throws: FeedFailed.self) {
                try connection.transaction { tx in
                    try tx.execute("INSERT INTO \(table) (id, payload) VALUES (7, '')")
                    try tx.copyIn("COPY \(table) (id, payload) FROM STDIN (FORMAT binary)") { _ in throw FeedFailed() }
                }
            }
            #expect(try connection.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 0)
        }
    }

    @Test func aDuplicateKeyNamesItsConstraintAndAPlainStatementIsRefused() throws {
        try TestDatabase.withTable(Self.columns) { (connection: Connection, table: String) throws in
            try connection.execute("INSERT INTO \(table) (id, payload) VALUES (5, '')")
            let error = #expect(throws: PQError.self) {
                try connection.copyIn("COPY \(table) (id, payload) FROM STDIN (FORMAT binary)") { copy in
                    var row = BinaryCopyEncoder()
                    row.header()
                    row.row(fields: 2)
                    row.int64(5)
                    try row.fieldLength(3)
                    try copy.write(row.take())
                    try copy.write([1, 2, 3])
                    row.trailer()
                    try copy.write(row.take())
                }
            }
            #expect(error?.isUniqueViolation == true)
            #expect(error?.constraintName == "\(table)_pkey")
            #expect(try connection.query("SELECT count(*) FROM \(table)")[0].decode(0, as: Int.self) == 1)
            let misuse = #expect(throws: PQError.self) { try connection.copyIn("SELECT 1") { _ in } }
            #expect(misuse?.code == .invalidUse)
            #expect(try connection.query("SELECT 2")[0].decode(0, as: Int.self) == 2)
            var nul = BinaryCopyEncoder()
            #expect(throws: PQError.self) { try nul.text("a\u{0}b") }
        }
    }
}
