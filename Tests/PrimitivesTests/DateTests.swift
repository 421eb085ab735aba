import Foundation
import TestSupport
import Testing

@testable import Primitives

/// RFC 3339 parsing by day arithmetic gives exactly what Calendar and DateComponents gave.
@Suite("RFC 3339 timestamps")
struct RFC3339Tests {
    /// The former implementation's last step, kept as the reference.
    static func calendarDate(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int, fraction: Double, offset: Int) -> Date? {
        var components = DateComponents()
        components.calendar = Calendar(identifier: .gregorian)
        components.timeZone = TimeZone(secondsFromGMT: 0)
        components.year = y
        components.month = mo
        components.day = d
        components.hour = h
        components.minute = mi
        components.second = s
        return components.date?.addingTimeInterval(fraction - TimeInterval(offset))
    }

    static func parse(_ text: String) -> Date? {
        RFC3339.secondsSinceReferenceDate(text).map(Date.init(timeIntervalSinceReferenceDate:))
    }

    @Test func sameInstantsAsCalendar() throws {
        var rng = SplitMix64(seed: 0xA11CE)
        for _ in 0..<3000 {
            let y = Int(rng.next() % 400) + 1800
            let mo = Int(rng.next() % 12) + 1
            let d = Int(rng.next() % 31) + 1
            let h = Int(rng.next() % 24)
            let mi = Int(rng.next() % 60)
            let s = Int(rng.next() % 61)
            let digits = Int(rng.next() % 8)
            let fractionText = digits == 0 ? "" : "." + (0..<digits).map { _ in String(rng.next() % 10) }.joined()
            let offsetMinutes = rng.next() % 3 == 0 ? 0 : Int(rng.next() % 1440) - 720
            let zone =
                offsetMinutes == 0 && rng.next() % 2 == 0
                ? "Z"
                : String(format: "%@%02d:%02d", offsetMinutes < 0 ? "-" : "+", abs(offsetMinutes) / 60, abs(offsetMinutes) % 60)
            let text = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", y, mo, d, h, mi, s) + fractionText + zone
            // The reference sums the fraction digit by digit the same way the parser does.
            var parsedFraction = 0.0
            var scale = 0.1
            for c in fractionText.dropFirst() {
                parsedFraction += Double(c.wholeNumberValue!) * scale
                scale /= 10
            }
            let expected = Self.calendarDate(y, mo, d, h, mi, s, fraction: parsedFraction, offset: offsetMinutes * 60)
            #expect(Self.parse(text) == expected, "\(text)")
        }
    }

    @Test func epochAndKnownDays() {
        #expect(Self.parse("2001-01-01T00:00:00Z") == Date(timeIntervalSinceReferenceDate: 0))
        #expect(Self.parse("1970-01-01T00:00:00Z") == Date(timeIntervalSince1970: 0))
        #expect(Self.parse("2026-02-31T00:00:00Z") == Self.parse("2026-03-03T00:00:00Z"), "lenient roll-over, as Calendar did")
        #expect(Self.parse("2026-13-01T00:00:00Z") == nil)
        #expect(Self.parse("2026-11-20T12:00:00") == nil)
        #expect(Self.parse("2026-11-20t12:00:00z") == Self.parse("2026-11-20T12:00:00Z"))
        #expect(Self.parse("2026-11-20 12:00:00Z") == Self.parse("2026-11-20T12:00:00Z"))
        #expect(Self.parse("2026-11-20T12:00:00.Z") == nil, "a point needs digits")
        #expect(Self.parse("2026-11-20T12:00:00+0100") == nil)
        #expect(Self.parse("2026-11-20T12:00:00Zjunk") == nil)
    }
}

@Suite("Civil dates")
struct CivilDateTests {
    @Test func knownDays() {
        #expect(CivilDate(year: 1970, month: 1, day: 1).daysSinceEpoch == 0)
        #expect(CivilDate(year: 2000, month: 3, day: 1).daysSinceEpoch == 11_017)
        #expect(CivilDate(year: 1969, month: 12, day: 31).daysSinceEpoch == -1)
        #expect(CivilDate(year: 0, month: 3, day: 1).daysSinceEpoch == -719_468)
        #expect(CivilDate(daysSinceEpoch: 11_017) == CivilDate(year: 2000, month: 3, day: 1))
        #expect(CivilDate(daysSinceEpoch: -1) == CivilDate(year: 1969, month: 12, day: 31))
        #expect(CivilDate(year: 2024, month: 2, day: 29).description == "2024-02-29")
        #expect(CivilDate(year: 99, month: 1, day: 2).description == "0099-01-02")
    }

    /// Every day of eight centuries either side of the epoch round-trips, and consecutive days are one apart
    /// with the month lengths of the Gregorian calendar (leap years by the 4/100/400 rule).
    @Test func everyDayRoundTrips() {
        var previous = CivilDate(daysSinceEpoch: -300_000 - 1)
        for days in -300_000...300_000 {
            let date = CivilDate(daysSinceEpoch: days)
            #expect(date.daysSinceEpoch == days)
            let year = previous.year
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let length = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][previous.month - 1]
            let expected =
                previous.day < length
                ? CivilDate(year: year, month: previous.month, day: previous.day + 1)
                : previous.month < 12
                    ? CivilDate(year: year, month: previous.month + 1, day: 1)
                    : CivilDate(year: year + 1, month: 1, day: 1)
            if date != expected {
                Issue.record("day \(days): \(date), expected \(expected)")
                return
            }
            previous = date
        }
    }

    @Test func fieldsOfInstantsBeforeTheEpochFloor() {
        let before = UTCDateTime(unixSeconds: -1)
        #expect(before.date == CivilDate(year: 1969, month: 12, day: 31))
        #expect((before.hour, before.minute, before.second) == (23, 59, 59))
        #expect(before.unixSeconds == -1)
        #expect(UTCDateTime(secondsSince1970: -0.25).rfc3339(fractionDigits: 3) == "1969-12-31T23:59:59.750Z")
        #expect((-7).floorDivided(by: 3) == (-3, 2))
        #expect(7.floorDivided(by: 3) == (2, 1))
    }
}

@Suite("Timestamp text")
struct DateTextTests {
    @Test func rfc3339FormsTruncateTheFraction() {
        let fields = UTCDateTime(secondsSince1970: 1_800_000_000.987_654_321)
        #expect(fields.rfc3339() == "2027-01-15T08:00:00Z")
        #expect(fields.rfc3339(fractionDigits: 3) == "2027-01-15T08:00:00.987Z")
        #expect(fields.rfc3339(fractionDigits: 6) == "2027-01-15T08:00:00.987654Z")
        #expect(
            UTCDateTime(unixSeconds: 0).iso8601(separator: UInt8(ascii: " "), fractionDigits: 6, zone: "+00")
                == "1970-01-01 00:00:00.000000+00")
        #expect(UTCDateTime(unixSeconds: 253_402_300_800).rfc3339() == "10000-01-01T00:00:00Z", "years past 9999 in full")
    }

    /// The same text as Foundation's ISO 8601 formatter, over instants spread across four centuries.
    @Test func rfc3339MatchesFoundationsFormatter() {
        let formatter = ISO8601DateFormatter()
        var rng = SplitMix64(seed: 0xDA7E)
        for _ in 0..<2000 {
            let seconds = Double(Int64(rng.next() % 12_000_000_000) - 4_000_000_000)
            let date = Date(timeIntervalSince1970: seconds)
            #expect(UTCDateTime(secondsSince1970: seconds).rfc3339() == formatter.string(from: date), "\(seconds)")
        }
    }

    @Test func amzDatesRoundTrip() throws {
        for text in ["19700101T000000Z", "20000229T235959Z", "20130524T000000Z", "21000301T120000Z"] {
            let fields = try #require(UTCDateTime(iso8601Basic: text))
            #expect(fields.iso8601Basic == text)
            #expect(UTCDateTime(unixSeconds: fields.unixSeconds).iso8601Basic == text)
        }
        for text in ["2013-05-24", "20130524T000000", "20131324T000000Z", "2013052aT000000Z", "20130524T000000Z "] {
            #expect(UTCDateTime(iso8601Basic: text) == nil, "\(text)")
        }
    }
}
