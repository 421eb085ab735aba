/// Reads the RFC 3339 timestamps providers send (`2026-11-20T12:00:09.900Z`, `…29.581613Z`, `…+00:00`),
/// with any number of fractional digits — Foundation's ISO 8601 formatter on Linux stops at milliseconds
/// and fails on microseconds.
///
/// It is on the intake hot path (three timestamps in every webhook body), so it reads bytes at fixed
/// positions and counts days with `CivilDate` instead of going through Calendar and DateComponents, which
/// were over 40% of a body's parse. Out-of-range days and a leap second roll over as Calendar's lenient
/// normalisation did (the day count is linear in the day and the second), so results are the same
/// (a differential test holds it to Calendar's answers).
public enum RFC3339 {
    /// Seconds from 2001-01-01 (Foundation's reference date) to 1970-01-01.
    static let referenceDateOffset = 978_307_200

    /// The instant as seconds since 2001-01-01T00:00:00Z, the value a Foundation `Date` holds
    /// (`Date(timeIntervalSinceReferenceDate:)` of it is exact); nil when `text` is not RFC 3339.
    public static func secondsSinceReferenceDate(_ text: String) -> Double? {
        var text = text
        return text.withUTF8(secondsSinceReferenceDate(utf8:))
    }

    /// The same, over UTF-8 bytes (a span of a body being parsed, not yet a `String`).
    public static func secondsSinceReferenceDate(utf8 chars: UnsafeBufferPointer<UInt8>) -> Double? {
        let digits = FixedDigits(chars)
        guard chars.count >= 20,
            let year = digits.number(0, 4), chars[4] == UInt8(ascii: "-"), let month = digits.number(5, 2),
            chars[7] == UInt8(ascii: "-"), let day = digits.number(8, 2),
            chars[10] == UInt8(ascii: "T") || chars[10] == UInt8(ascii: "t") || chars[10] == UInt8(ascii: " "),
            let hour = digits.number(11, 2), chars[13] == UInt8(ascii: ":"), let minute = digits.number(14, 2),
            chars[16] == UInt8(ascii: ":"), let second = digits.number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < chars.count, chars[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < chars.count, chars[index] >= 48, chars[index] <= 57 {
                fraction += Double(chars[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < chars.count else { return nil }
        var offsetSeconds = 0
        switch chars[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == chars.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == chars.count, let oh = digits.number(index + 1, 2), chars[index + 3] == UInt8(ascii: ":"),
                let om = digits.number(index + 4, 2)
            else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (chars[index] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        let fields = UTCDateTime(date: CivilDate(year: year, month: month, day: day), hour: hour, minute: minute, second: second)
        // Whole seconds first, then the fraction and offset added: the steps Calendar's date and
        // `addingTimeInterval` took, so the Double comes out bit for bit the same.
        return Double(fields.unixSeconds - referenceDateOffset) + (fraction - Double(offsetSeconds))
    }
}
