/// The text forms of an instant the daemon and its libraries write, all in UTC, all by hand.
///
/// Why by hand: `DateFormatter` and `ISO8601DateFormatter` are locale- and calendar-sensitive, costly to
/// make and to share between threads, and slow on Linux; these forms are fixed, and some are written once
/// per stored asset of every lookup (presigned URLs) or once per log line.
extension UTCDateTime {
    /// The fields of `secondsSince1970` (a `Date`'s `timeIntervalSince1970`): whole seconds rounded down,
    /// nanoseconds truncated, so a written timestamp never runs ahead of the instant.
    public init(secondsSince1970 seconds: Double) {
        let whole = seconds.rounded(.down)
        let nanoseconds = Int((seconds - whole) * 1_000_000_000)
        self.init(unixSeconds: Int(whole), nanosecond: min(999_999_999, max(0, nanoseconds)))
    }

    /// RFC 3339 / ISO 8601 extended form in UTC: `2026-11-21T10:00:00Z`, or with `fractionDigits` (1 to 9)
    /// digits of the second, truncated: `2026-11-21T10:00:00.123Z`.
    public func rfc3339(fractionDigits: Int = 0) -> String {
        iso8601(separator: UInt8(ascii: "T"), fractionDigits: fractionDigits, zone: "Z")
    }

    /// ISO 8601 extended form with the given date-time separator and zone designator: PostgreSQL writes
    /// `2026-11-21 10:00:00.123456+00` (`separator: " "`, `zone: "+00"`).
    public func iso8601(separator: UInt8, fractionDigits: Int, zone: String) -> String {
        precondition((0...9).contains(fractionDigits), "0 to 9 fraction digits")
        var text = DigitWriter(capacity: 21 + fractionDigits + zone.utf8.count)
        text.date(date, separator: UInt8(ascii: "-"))
        text.byte(separator)
        text.padded(hour, width: 2)
        text.byte(UInt8(ascii: ":"))
        text.padded(minute, width: 2)
        text.byte(UInt8(ascii: ":"))
        text.padded(second, width: 2)
        if fractionDigits > 0 {
            var divisor = 1
            for _ in fractionDigits..<9 { divisor *= 10 }
            text.byte(UInt8(ascii: "."))
            text.padded(nanosecond / divisor, width: fractionDigits)
        }
        text.bytes.append(contentsOf: zone.utf8)
        return text.string
    }

    /// ISO 8601 basic form, `20150830T123600Z`: SigV4's `X-Amz-Date` (its first eight characters are the
    /// credential scope's day).
    public var iso8601Basic: String {
        var text = DigitWriter(capacity: 16)
        text.date(date, separator: nil)
        text.byte(UInt8(ascii: "T"))
        text.padded(hour, width: 2)
        text.padded(minute, width: 2)
        text.padded(second, width: 2)
        text.byte(UInt8(ascii: "Z"))
        return text.string
    }

    /// Reads `yyyyMMddTHHmmssZ` (the form `iso8601Basic` writes); nil for anything else.
    public init?(iso8601Basic text: String) {
        var text = text
        guard
            let fields = text.withUTF8({ chars -> UTCDateTime? in
                let digits = FixedDigits(chars)
                guard chars.count == 16, chars[8] == UInt8(ascii: "T"), chars[15] == UInt8(ascii: "Z"),
                    let year = digits.number(0, 4), let month = digits.number(4, 2), let day = digits.number(6, 2),
                    let hour = digits.number(9, 2), let minute = digits.number(11, 2), let second = digits.number(13, 2),
                    (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
                else { return nil }
                return UTCDateTime(date: CivilDate(year: year, month: month, day: day), hour: hour, minute: minute, second: second)
            })
        else { return nil }
        self = fields
    }
}

/// Decimal digits at fixed positions of ASCII text, the way every timestamp grammar here is laid out.
struct FixedDigits {
    let chars: UnsafeBufferPointer<UInt8>

    init(_ chars: UnsafeBufferPointer<UInt8>) { self.chars = chars }

    /// The `count` digits from `from` as a number; nil when the text is shorter or one is not a digit.
    @inline(__always)
    func number(_ from: Int, _ count: Int) -> Int? {
        guard from + count <= chars.count else { return nil }
        var value = 0
        for c in chars[from..<(from + count)] {
            guard c >= 48, c <= 57 else { return nil }
            value = value * 10 + Int(c - 48)
        }
        return value
    }
}

/// Writes zero-padded decimal fields into bytes: one allocation per timestamp, no `String(format:)`.
struct DigitWriter {
    var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    var string: String { String(decoding: bytes, as: UTF8.self) }

    mutating func byte(_ byte: UInt8) { bytes.append(byte) }

    /// `value` in at least `width` digits (more when it needs more); a negative value gets a leading `-`.
    mutating func padded(_ value: Int, width: Int) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        let magnitude = value.magnitude
        var scale: UInt = 1
        var count = 1
        while magnitude / scale >= 10 {
            scale *= 10
            count += 1
        }
        for _ in count..<max(count, width) { bytes.append(UInt8(ascii: "0")) }
        while scale > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude / scale % 10))
            scale /= 10
        }
    }

    /// `yyyy-MM-dd` with `separator`, or `yyyyMMdd` without.
    mutating func date(_ date: CivilDate, separator: UInt8?) {
        padded(date.year, width: 4)
        if let separator { byte(separator) }
        padded(date.month, width: 2)
        if let separator { byte(separator) }
        padded(date.day, width: 2)
    }
}
