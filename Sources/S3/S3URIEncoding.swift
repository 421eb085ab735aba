import Primitives

/// Percent-encoding exactly as SigV4 canonicalisation and S3 expect it.
///
/// Foundation's `addingPercentEncoding` keeps characters (`+`, `=`, `:`, `@`, …) that SigV4 requires
/// encoded, and its behaviour differs between platforms, so the rule is written out here: RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) are kept, every other UTF-8 byte becomes `%XX`
/// with uppercase hex. `/` is kept only when `encodeSlash` is false (object key paths).
public enum S3URIEncoding {
    public static func encode(_ s: String, encodeSlash: Bool) -> String {
        encode(bytes: s.utf8, encodeSlash: encodeSlash)
    }

    /// Byte-level form, so that canonicalising an already-encoded URL (decode, then encode) keeps
    /// bytes that are not valid UTF-8 (`%FF`) instead of turning them into U+FFFD.
    static func encode(bytes: some Sequence<UInt8>, encodeSlash: Bool) -> String {
        var out = [UInt8]()
        for byte in bytes {
            if isUnreserved(byte) || (byte == UInt8(ascii: "/") && !encodeSlash) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                Hex.append(byte, to: &out, uppercase: true)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes well-formed `%XX` escapes to bytes; a stray `%` stays literal. `+` is left alone:
    /// S3 treats it as a plus sign in paths, and the query strings we build never use it for space.
    static func decodeBytes(_ s: Substring) -> [UInt8] {
        let bytes = Array(s.utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
                let hi = Hex.value(of: bytes[i + 1]), let lo = Hex.value(of: bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    /// Brings one path segment or query component, raw or already encoded, to its single canonical
    /// encoding: decode what is escaped, then encode once.
    static func canonical(_ s: Substring, encodeSlash: Bool) -> String {
        encode(bytes: decodeBytes(s), encodeSlash: encodeSlash)
    }

    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
