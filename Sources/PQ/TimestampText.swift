import Foundation
import Primitives

/// PostgreSQL's ISO text form of `timestamptz`, written and read without Foundation's calendars
/// or formatters (which are slow and locale-dependent): "2026-11-21 13:41:33.123456+00".
///
/// Connections run with `TimeZone=UTC` and `DateStyle=ISO`, so the server writes this form; the
/// reader still honours any offset and the " BC" suffix so a differently configured session
/// cannot produce a silently wrong instant. Precision is the server's: microseconds.
enum TimestampText {
    /// Seconds from 1970-01-01 to 2001-01-01, Foundation's reference date.
    private static let referenceDateUnixMicros: Int64 = 978_307_200 * 1_000_000

    /// Microseconds since the Unix epoch, rounded to the nearest microsecond (the server's unit).
    static func unixMicroseconds(_ date: Date) -> Int64? {
        let micros = (date.timeIntervalSinceReferenceDate * 1_000_000).rounded()
        // PostgreSQL's range ends in 294276 AD; anything near Int64's range is no real instant.
        guard micros.isFinite, abs(micros) < 9.0e18 - 1.0e16 else { return nil }
        return Int64(micros) + referenceDateUnixMicros
    }

    static func date(unixMicroseconds micros: Int64) -> Date {
        Date(timeIntervalSinceReferenceDate: Double(micros - referenceDateUnixMicros) / 1_000_000)
    }

    /// The text the server parses back to the same microsecond, always in UTC.
    static func format(_ date: Date) -> String {
        guard let micros = unixMicroseconds(date) else {
            let interval = date.timeIntervalSinceReferenceDate
            // Infinite dates map to PostgreSQL's infinities; NaN is sent as text the server rejects.
            return interval.isNaN ? "NaN" : (interval > 0 ? "infinity" : "-infinity")
        }
        let (seconds, fraction) = Int(micros).floorDivided(by: 1_000_000)
        var fields = UTCDateTime(unixSeconds: seconds, nanosecond: fraction * 1000)
        // PostgreSQL counts years before 1 as "BC": astronomical year 0 is 1 BC.
        let bc = fields.date.year <= 0
        if bc { fields.date.year = 1 - fields.date.year }
        let text = fields.iso8601(separator: UInt8(ascii: " "), fractionDigits: 6, zone: "+00")
        return bc ? text + " BC" : text
    }

    /// Parses "YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]". A missing offset (a plain
    /// `timestamp` column) is read as UTC, the session time zone.
    static func parse(_ text: String) -> Date? {
        var scanner = ByteScanner(Array(text.utf8))
        guard let year = scanner.digits(min: 4, max: 9), scanner.skip(UInt8(ascii: "-")),
            let month = scanner.digits(min: 2, max: 2), scanner.skip(UInt8(ascii: "-")),
            let day = scanner.digits(min: 2, max: 2),
            scanner.skip(UInt8(ascii: " ")) || scanner.skip(UInt8(ascii: "T")),
            let hour = scanner.digits(min: 2, max: 2), scanner.skip(UInt8(ascii: ":")),
            let minute = scanner.digits(min: 2, max: 2), scanner.skip(UInt8(ascii: ":")),
            let second = scanner.digits(min: 2, max: 2)
        else { return nil }
        var micros: Int64 = 0
        if scanner.skip(UInt8(ascii: ".")) {
            let start = scanner.position
            guard let fraction = scanner.digits(min: 1, max: 6) else { return nil }
            var scale = Int64(1)
            for _ in 0..<(6 - (scanner.position - start)) { scale *= 10 }
            micros = fraction * scale
        }
        var offsetSeconds: Int64 = 0
        if let sign = scanner.peek, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            scanner.position += 1
            guard let hours = scanner.digits(min: 2, max: 2) else { return nil }
            var offset = hours * 3600
            if scanner.skip(UInt8(ascii: ":")) {
                guard let minutes = scanner.digits(min: 2, max: 2) else { return nil }
                offset += minutes * 60
                if scanner.skip(UInt8(ascii: ":")) {
                    guard let seconds = scanner.digits(min: 2, max: 2) else { return nil }
                    offset += seconds
                }
            }
            offsetSeconds = sign == UInt8(ascii: "+") ? offset : -offset
        }
        var astronomicalYear = year
        if scanner.skip(UInt8(ascii: " ")) {
            guard scanner.skip(UInt8(ascii: "B")), scanner.skip(UInt8(ascii: "C")) else { return nil }
            astronomicalYear = 1 - year
        }
        guard scanner.atEnd, (1...12).contains(month), (1...31).contains(day), hour <= 24,
            minute <= 59, second <= 60
        else { return nil }
        let days = Int64(CivilDate(year: Int(astronomicalYear), month: Int(month), day: Int(day)).daysSinceEpoch)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        let (total, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        guard !overflow else { return nil }
        return date(unixMicroseconds: total + micros)
    }
}

/// A cursor over ASCII bytes for the small fixed grammars PQ reads.
struct ByteScanner {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { position == bytes.count }
    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skip(_ byte: UInt8) -> Bool {
        guard peek == byte else { return false }
        position += 1
        return true
    }

    /// Reads between `min` and `max` decimal digits (more digits than `max` is a failure).
    mutating func digits(min: Int, max: Int) -> Int64? {
        var value: Int64 = 0
        var count = 0
        while let byte = peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            guard count < max else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            count += 1
            position += 1
        }
        return count >= min ? value : nil
    }
}
