import Primitives

/// PostgreSQL's hex text form of `bytea` ("\x0aff..."), the form every connection asks for with
/// `bytea_output=hex`. Parameters go the other way in binary format, so only reading is needed.
enum ByteaHex {
    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = text.utf8
        guard utf8.starts(with: [UInt8(ascii: "\\"), UInt8(ascii: "x")]) else { return nil }
        return Hex.decode(digits: utf8.dropFirst(2))
    }
}
