import Foundation
import Primitives

/// The two date forms SigV4 uses, `20150830T123600Z` and `20150830`, always in UTC: ISO 8601's basic
/// form, written by `Primitives` (one allocation, no `DateFormatter`, which is locale- and calendar-
/// sensitive and costly to share between threads).
struct AMZDate: Sendable, Equatable {
    let timestamp: String  // yyyyMMdd'T'HHmmss'Z'
    var day: Substring { timestamp.prefix(8) }

    init(_ date: Date) {
        timestamp = UTCDateTime(secondsSince1970: date.timeIntervalSince1970).iso8601Basic
    }

    /// Parses `yyyyMMddTHHmmssZ` back to a Date (tests and vectors carry dates in this form).
    static func parse(_ text: String) -> Date? {
        UTCDateTime(iso8601Basic: text).map { Date(timeIntervalSince1970: TimeInterval($0.unixSeconds)) }
    }
}
