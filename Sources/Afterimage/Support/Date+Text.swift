import Foundation
import Primitives

/// The timestamp text the daemon reads and writes, for Foundation's `Date`: the work is `Primitives`'
/// (by hand, no formatters), which knows nothing of Foundation.
extension Date {
    /// An RFC 3339 timestamp as providers send it (`2026-11-20T12:00:09.900Z`, any number of fraction
    /// digits, `Z` or an offset); nil for anything else.
    init?(rfc3339 text: String) {
        guard let seconds = RFC3339.secondsSinceReferenceDate(text) else { return nil }
        self.init(timeIntervalSinceReferenceDate: seconds)
    }

    /// The same over the UTF-8 bytes of a body being parsed.
    init?(rfc3339 utf8: UnsafeBufferPointer<UInt8>) {
        guard let seconds = RFC3339.secondsSinceReferenceDate(utf8: utf8) else { return nil }
        self.init(timeIntervalSinceReferenceDate: seconds)
    }

    /// `2026-11-21T10:00:00Z` in UTC, or with `fractionDigits` digits of the second (truncated):
    /// `2026-11-21T10:00:00.123Z`.
    func rfc3339(fractionDigits: Int = 0) -> String {
        UTCDateTime(secondsSince1970: timeIntervalSince1970).rfc3339(fractionDigits: fractionDigits)
    }
}
