import Foundation

/// A Swift type a column can be read as, from PostgreSQL's text result format.
///
/// `text` is nil for SQL NULL. Non-optional types throw on NULL, so a schema change that makes a
/// column nullable shows up as an error instead of a made-up value; `Optional` maps NULL to nil.
/// Errors name the expected type but never quote the value (it may be user data).
public protocol PQDecodable: Sendable {
    static func pqDecode(text: String?) throws(PQError) -> Self
}

extension PQDecodable {
    /// The value, or `decodingFailed` for NULL: the common first step of every non-optional type.
    static func pqRequire(_ text: String?) throws(PQError) -> String {
        guard let text else { throw PQError(code: .decodingFailed, message: "NULL where \(Self.self) was expected") }
        return text
    }

    static func pqMismatch() -> PQError {
        PQError(code: .decodingFailed, message: "value is not a valid \(Self.self)")
    }
}

extension String: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> String { try pqRequire(text) }
}

extension Int: PQDecodable {
    /// Overflow is an error, never a wrapped or clamped number.
    public static func pqDecode(text: String?) throws(PQError) -> Int {
        guard let value = Int(try pqRequire(text)) else { throw pqMismatch() }
        return value
    }
}

extension Int64: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> Int64 {
        guard let value = Int64(try pqRequire(text)) else { throw pqMismatch() }
        return value
    }
}

extension Int32: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> Int32 {
        guard let value = Int32(try pqRequire(text)) else { throw pqMismatch() }
        return value
    }
}

extension Double: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> Double {
        switch try pqRequire(text) {
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        case "NaN": return .nan
        case let digits:
            guard let value = Double(digits), value.isFinite else { throw pqMismatch() }
            return value
        }
    }
}

extension Bool: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> Bool {
        switch try pqRequire(text) {
        case "t", "true": return true
        case "f", "false": return false
        default: throw pqMismatch()
        }
    }
}

extension Date: PQDecodable {
    /// From `timestamptz` text; a plain `timestamp` is read as UTC (the session time zone).
    public static func pqDecode(text: String?) throws(PQError) -> Date {
        guard let date = TimestampText.parse(try pqRequire(text)) else { throw pqMismatch() }
        return date
    }
}

extension UUID: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> UUID {
        guard let uuid = UUID(uuidString: try pqRequire(text)) else { throw pqMismatch() }
        return uuid
    }
}

extension Array: PQDecodable where Element == UInt8 {
    /// From `bytea` in hex output format (`\x...`), which every PQ connection requests.
    public static func pqDecode(text: String?) throws(PQError) -> [UInt8] {
        guard let bytes = ByteaHex.decode(try pqRequire(text)) else { throw pqMismatch() }
        return bytes
    }
}

extension PQJSON: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> PQJSON { PQJSON(try pqRequire(text)) }
}

extension Optional: PQDecodable where Wrapped: PQDecodable {
    public static func pqDecode(text: String?) throws(PQError) -> Wrapped? {
        guard let text else { return nil }
        return try Wrapped.pqDecode(text: text)
    }
}
