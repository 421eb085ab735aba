/// A day of the proleptic Gregorian calendar, as the date text of RFC 3339, SigV4 and PostgreSQL writes it.
///
/// The conversions are Howard Hinnant's public-domain `days_from_civil` / `civil_from_days`: integer
/// arithmetic, no table, no time zone. They replace `Calendar` and `DateComponents`, which were over 40% of
/// a webhook body's parse on Linux and are locale-sensitive besides.
public struct CivilDate: Hashable, Sendable, CustomStringConvertible {
    /// Astronomical year numbering: 0 is 1 BC, -1 is 2 BC.
    public var year: Int
    /// 1...12.
    public var month: Int
    /// 1...31.
    public var day: Int

    /// No validation: `daysSinceEpoch` of an out-of-range day rolls over into the next month (February 31st
    /// is March 3rd or 2nd), as `Calendar`'s lenient normalisation did. Parsers check ranges themselves.
    public init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// The date `days` days after 1970-01-01 (before it, for a negative count).
    public init(daysSinceEpoch days: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153  // March is 0
        day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// Days from 1970-01-01; linear in `day`, so an out-of-range day simply counts on.
    public var daysSinceEpoch: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// `2026-11-21` (years below 1000 zero-padded to four digits).
    public var description: String {
        var text = DigitWriter(capacity: 10)
        text.date(self, separator: UInt8(ascii: "-"))
        return text.string
    }
}

/// An instant broken into its UTC calendar fields: what a timestamp's text is written from and read into.
public struct UTCDateTime: Hashable, Sendable {
    public var date: CivilDate
    public var hour: Int
    public var minute: Int
    /// 0...59 (a parsed leap second, 60, rolls over into the next minute through `unixSeconds`).
    public var second: Int
    /// 0...999_999_999 below the second.
    public var nanosecond: Int

    public init(date: CivilDate, hour: Int, minute: Int, second: Int, nanosecond: Int = 0) {
        self.date = date
        self.hour = hour
        self.minute = minute
        self.second = second
        self.nanosecond = nanosecond
    }

    /// The fields of `unixSeconds` (whole seconds since 1970-01-01T00:00:00Z, floor for instants before it).
    public init(unixSeconds: Int, nanosecond: Int = 0) {
        let (days, secondOfDay) = unixSeconds.floorDivided(by: 86_400)
        date = CivilDate(daysSinceEpoch: days)
        hour = secondOfDay / 3600
        minute = secondOfDay / 60 % 60
        second = secondOfDay % 60
        self.nanosecond = nanosecond
    }

    /// Whole seconds since the Unix epoch (the nanoseconds left out).
    public var unixSeconds: Int {
        date.daysSinceEpoch * 86_400 + hour * 3600 + minute * 60 + second
    }
}

extension Int {
    /// Quotient rounded toward minus infinity and a remainder in `0..<divisor` (Swift's `/` and `%`
    /// truncate toward zero, which puts instants before 1970 in the wrong day).
    @inlinable
    public func floorDivided(by divisor: Int) -> (quotient: Int, remainder: Int) {
        var quotient = self / divisor
        var remainder = self % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}
