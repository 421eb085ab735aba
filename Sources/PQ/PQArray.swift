import Glibc

/// An element type a `PQArray` can carry, written in PostgreSQL's binary send format.
public protocol PQArrayElement: Sendable {
    /// The element type's OID (array_recv checks it against the array type's element).
    static var pqElementOID: UInt32 { get }
    /// The OID of the one-dimensional array type, sent as the parameter's type.
    static var pqArrayOID: UInt32 { get }
    /// Appends the element's binary form (without its length word).
    func appendPQBinary(to bytes: inout [UInt8]) throws(PQError)
}

/// A one-dimensional PostgreSQL array parameter (`text[]`, `bytea[]`, `int8[]`, `int4[]`, `bool[]`) with NULLs,
/// sent in binary format.
///
/// Why: a statement that writes many rows at once (intake's group commit) takes one array per column and
/// expands them with `unnest($1, $2, ...)`. Compared with one JSON document expanded by `jsonb_to_recordset`,
/// the server neither parses JSON nor base64-decodes bodies (bytea elements travel as raw bytes), and the
/// client neither escapes strings nor encodes base64: an element is its length and its bytes.
///
/// Layout (array_recv): int32 ndim (1, or 0 when empty), int32 has-null flag, uint32 element OID, then for the
/// one dimension int32 length and int32 lower bound (1); then per element int32 byte count (-1 for NULL) and
/// the bytes. All integers big-endian.
public struct PQArray<Element: PQArrayElement>: PQEncodable {
    /// The encoded array, header included.
    public private(set) var bytes: [UInt8]
    public private(set) var count = 0
    private var hasNull = false

    /// An empty array; `capacity` is a hint in bytes.
    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(20 + capacity)
        bytes.appendBigEndian(Int32(1))  // ndim; rewritten to 0 while empty (see pqValue)
        bytes.appendBigEndian(Int32(0))  // has-null flag, patched by append
        bytes.appendBigEndian(Element.pqElementOID)
        bytes.appendBigEndian(Int32(0))  // dimension length, patched by append
        bytes.appendBigEndian(Int32(1))  // lower bound
    }

    /// The elements in order; nil elements are NULL.
    public init(_ elements: some Sequence<Element?>) throws(PQError) {
        self.init()
        for element in elements { try append(element) }
    }

    /// Adds one element (nil for NULL). Throws for a value the type cannot hold (a text with a NUL byte).
    public mutating func append(_ element: Element?) throws(PQError) {
        guard count < Int(Int32.max) else {
            throw PQError(code: .invalidParameter, message: "an array parameter has too many elements")
        }
        if let element {
            let lengthAt = bytes.count
            bytes.appendBigEndian(Int32(0))
            try element.appendPQBinary(to: &bytes)
            let length = bytes.count - lengthAt - 4
            guard length < Int(Int32.max) else {
                throw PQError(code: .invalidParameter, message: "an array element is larger than PostgreSQL's 1 GB limit")
            }
            bytes.storeBigEndian(Int32(length), at: lengthAt)
        } else {
            bytes.appendBigEndian(Int32(-1))
            if !hasNull {
                hasNull = true
                bytes.storeBigEndian(Int32(1), at: 4)
            }
        }
        count += 1
        bytes.storeBigEndian(Int32(count), at: 12)
    }

    /// The parameter's type comes from the value (`.binary`), so this static one is not used.
    public static var pqTypeOID: UInt32 { Element.pqArrayOID }

    public var pqValue: PQValue {
        // An empty array has no dimensions: ndim 0 and nothing after the element OID.
        if count == 0 { return .binary(oid: Element.pqArrayOID, bytes: [0, 0, 0, 0, 0, 0, 0, 0] + bytes[8..<12]) }
        return .binary(oid: Element.pqArrayOID, bytes: bytes)
    }
}

extension String: PQArrayElement {
    public static var pqElementOID: UInt32 { PQTypeOID.text }
    public static var pqArrayOID: UInt32 { PQTypeOID.textArray }
    /// textrecv takes the UTF-8 bytes as they are; a NUL byte is refused here, as for a text parameter.
    public func appendPQBinary(to bytes: inout [UInt8]) throws(PQError) {
        let start = bytes.count
        bytes.append(contentsOf: utf8)
        let containsNUL = bytes.withUnsafeBufferPointer { buffer in
            buffer.count > start && memchr(buffer.baseAddress! + start, 0, buffer.count - start) != nil
        }
        if containsNUL {
            throw PQError(code: .invalidParameter, message: "an array element contains a NUL byte")
        }
    }
}

extension Array: PQArrayElement where Element == UInt8 {
    public static var pqElementOID: UInt32 { PQTypeOID.bytea }
    public static var pqArrayOID: UInt32 { PQTypeOID.byteaArray }
    public func appendPQBinary(to bytes: inout [UInt8]) throws(PQError) { bytes.append(contentsOf: self) }
}

extension Int64: PQArrayElement {
    public static var pqElementOID: UInt32 { PQTypeOID.int8 }
    public static var pqArrayOID: UInt32 { PQTypeOID.int8Array }
    public func appendPQBinary(to bytes: inout [UInt8]) throws(PQError) { bytes.appendBigEndian(self) }
}

extension Int32: PQArrayElement {
    public static var pqElementOID: UInt32 { PQTypeOID.int4 }
    public static var pqArrayOID: UInt32 { PQTypeOID.int4Array }
    public func appendPQBinary(to bytes: inout [UInt8]) throws(PQError) { bytes.appendBigEndian(self) }
}

extension Bool: PQArrayElement {
    public static var pqElementOID: UInt32 { PQTypeOID.bool }
    public static var pqArrayOID: UInt32 { PQTypeOID.boolArray }
    public func appendPQBinary(to bytes: inout [UInt8]) throws(PQError) { bytes.append(self ? 1 : 0) }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var shift = T.bitWidth
        while shift > 0 {
            shift -= 8
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    mutating func storeBigEndian(_ value: Int32, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 24)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 16)
        self[offset + 2] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 3] = UInt8(truncatingIfNeeded: value)
    }
}
