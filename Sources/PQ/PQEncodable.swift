import Foundation

/// One bind parameter as it travels to the server: text format, except `bytea`, which goes in
/// binary so arbitrary bytes need no escaping and no doubling in size.
public enum PQValue: Sendable, Hashable {
    case null
    case text(String)
    case bytea([UInt8])
    /// Bytes already in the binary send format of the type `oid` (see `PQArray`), sent in binary format.
    case binary(oid: UInt32, bytes: [UInt8])
}

/// PostgreSQL type OIDs PQ sends with parameters (from pg_type.dat; stable across versions).
public enum PQTypeOID {
    /// Lets the server infer the type from context, as it does for a quoted literal.
    public static let unspecified: UInt32 = 0
    public static let bool: UInt32 = 16
    public static let bytea: UInt32 = 17
    public static let int8: UInt32 = 20
    public static let int4: UInt32 = 23
    public static let text: UInt32 = 25
    public static let float8: UInt32 = 701
    public static let timestamptz: UInt32 = 1184
    public static let uuid: UInt32 = 2950
    public static let boolArray: UInt32 = 1000
    public static let byteaArray: UInt32 = 1001
    public static let int4Array: UInt32 = 1007
    public static let textArray: UInt32 = 1009
    public static let int8Array: UInt32 = 1016
}

/// A Swift value that can be a query parameter.
///
/// Parameters always travel separately from the SQL text (PQexecParams), so a value can never
/// change a statement's meaning. Each type states the PostgreSQL type it stands for, which lets
/// `select $1 + 1` or `where id = $1` resolve without casts, while `String` and `PQJSON` leave the
/// type to the server so they fit text, varchar, enum, json and jsonb columns alike.
public protocol PQEncodable: Sendable {
    /// The type OID sent with the parameter; `PQTypeOID.unspecified` lets the server infer it.
    static var pqTypeOID: UInt32 { get }
    /// The value in PostgreSQL's text input syntax, or bytes for `bytea`, or `.null`.
    var pqValue: PQValue { get }
}

extension PQValue: PQEncodable {
    /// Untyped: the server infers text from context; `.bytea` is always sent as `bytea`.
    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { self }
}

extension String: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { .text(self) }
}

extension Int: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.int8 }
    public var pqValue: PQValue { .text(String(self)) }
}

extension Int64: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.int8 }
    public var pqValue: PQValue { .text(String(self)) }
}

extension Int32: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.int4 }
    public var pqValue: PQValue { .text(String(self)) }
}

extension Double: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.float8 }
    /// Swift's shortest round-trip digits, which float8in reads back to the same bits.
    public var pqValue: PQValue {
        if isNaN { return .text("NaN") }
        if isInfinite { return .text(self > 0 ? "Infinity" : "-Infinity") }
        return .text(String(self))
    }
}

extension Bool: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.bool }
    public var pqValue: PQValue { .text(self ? "true" : "false") }
}

extension Date: PQEncodable {
    /// Sent as `timestamptz` in UTC, rounded to the microsecond (the server's precision). `Date`
    /// is a Double of seconds since 2001, so it holds exact microseconds only within about 270
    /// years of 2001; further out the nearest representable instant is sent.
    public static var pqTypeOID: UInt32 { PQTypeOID.timestamptz }
    public var pqValue: PQValue { .text(TimestampText.format(self)) }
}

extension UUID: PQEncodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.uuid }
    public var pqValue: PQValue { .text(uuidString.lowercased()) }
}

extension Array: PQEncodable where Element == UInt8 {
    /// `bytea`, sent in binary format.
    public static var pqTypeOID: UInt32 { PQTypeOID.bytea }
    public var pqValue: PQValue { .bytea(self) }
}

extension Optional: PQEncodable where Wrapped: PQEncodable {
    /// The wrapped type's OID, so a NULL still has a type (`$1::int8 is null` needs no cast).
    public static var pqTypeOID: UInt32 { Wrapped.pqTypeOID }
    public var pqValue: PQValue { self?.pqValue ?? .null }
}

/// JSON text for a `json` or `jsonb` column, kept as the exact text (PQ neither parses nor
/// re-encodes it; the Afterimage layer owns the JSON model). Sent untyped so both column types
/// accept it; read back as the server's text.
public struct PQJSON: PQEncodable, Hashable, Sendable {
    public var text: String
    public init(_ text: String) { self.text = text }

    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { .text(text) }
}
