import Foundation
import Testing

@testable import PQ

/// The text forms PQ writes and reads, without a server.
@Suite struct TextFormatTests {
    @Test func timestampWithMicrosecondsParsesToTheExactInstant() throws {
        let date = try #require(TimestampText.parse("2026-11-21 13:41:33.123456+00"))
        #expect(TimestampText.unixMicroseconds(date) == 1_795_268_493_123_456)
    }

    @Test func fractionIsOptionalAndShortFractionsAreScaled() throws {
        let whole = try #require(TimestampText.parse("2026-11-21 13:41:33+00"))
        #expect(TimestampText.unixMicroseconds(whole) == 1_795_268_493_000_000)
        let short = try #require(TimestampText.parse("2026-11-21 13:41:33.5+00"))
        #expect(TimestampText.unixMicroseconds(short) == 1_795_268_493_500_000)
    }

    @Test func offsetsAreHonoured() throws {
        let utc = try #require(TimestampText.parse("2026-11-21 13:41:33+00"))
        let plus = try #require(TimestampText.parse("2026-11-21 19:11:33+05:30"))
        let minus = try #require(TimestampText.parse("2026-11-21 05:41:33-08"))
        #expect(utc == plus)
        #expect(utc == minus)
    }

    @Test func formatAndParseRoundTripAcrossEras() throws {
        // Date is a Double of seconds since 2001: exact microseconds near now, whole seconds far away.
        for micros: Int64 in [
            0, -1, -1_500_000, 1_795_268_493_123_456, 4_102_444_799_999_999, 253_402_300_799_000_000,
            -62_135_596_800_000_000, -62_135_596_801_000_000, -210_866_760_000_000_000,
        ] {
            let date = TimestampText.date(unixMicroseconds: micros)
            let text = TimestampText.format(date)
            let parsed = try #require(TimestampText.parse(text), "\(text)")
            #expect(TimestampText.unixMicroseconds(parsed) == micros, "\(text)")
        }
        #expect(TimestampText.format(TimestampText.date(unixMicroseconds: 0)) == "1970-01-01 00:00:00.000000+00")
        #expect(
            TimestampText.format(TimestampText.date(unixMicroseconds: -62_135_596_801_000_000))
                == "0001-12-31 23:59:59.000000+00 BC")
    }

    @Test(arguments: [
        "", "infinity", "2026-13-01 00:00:00+00", "2026-11-21", "2026-11-21 13:41:33.1234567+00",
        "2026-11-21 13:41:33+00 AD", "2026-11-21 13:41:33+0", "x026-11-21 13:41:33+00",
    ])
    func malformedTimestampsAreRejected(_ text: String) {
        #expect(TimestampText.parse(text) == nil)
    }

    @Test func byteaHexDecodes() {
        #expect(ByteaHex.decode("\\x") == [])
        #expect(ByteaHex.decode("\\x00ff7Fa0") == [0x00, 0xFF, 0x7F, 0xA0])
        #expect(ByteaHex.decode("\\x0") == nil)
        #expect(ByteaHex.decode("\\xzz") == nil)
        #expect(ByteaHex.decode("\\000") == nil)
    }

    @Test func redactionRemovesPasswordsInEveryForm() {
        let uri = "postgresql://user:pa%24%24word@db.example:5432/app"
        let message = "failed for postgresql://user:pa%24%24word@db.example:5432/app with pa$$word and pa%24%24word"
        let redacted = SecretRedaction.redact(message, conninfo: uri)
        #expect(!redacted.contains("pa$$word"))
        #expect(!redacted.contains("pa%24%24word"))
        let keyValue = "host=db password=hunter2secret user=x"
        #expect(!SecretRedaction.redact("saw hunter2secret", conninfo: keyValue).contains("hunter2secret"))
    }

    @Test func errorDescriptionNamesCodeAndStateButNothingElse() {
        let error = PQError(
            code: .queryFailed, message: "duplicate key value violates unique constraint \"t_pkey\"",
            sqlState: "23505", constraintName: "t_pkey")
        #expect(error.isUniqueViolation)
        #expect(
            error.description == "PQError(queryFailed, SQLSTATE 23505, constraint t_pkey): duplicate key value violates unique constraint \"t_pkey\"")
    }
}
