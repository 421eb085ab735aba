import Primitives

/// Writes JSON straight into bytes, in the order the fields are given.
///
/// The lookup answers are the daemon's hottest path (the benchmark compares them with `pgbench -S`), and
/// they embed the prediction's `input` exactly as PostgreSQL returns it (`jsonb::text`): `JSONEncoder`
/// would need it decoded into a value tree first and re-encoded, which is both slower and lossy for numbers.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    /// True after a value: the next key or array element needs a comma first.
    private var needsComma = false

    init(capacity: Int = 1024) { bytes.reserveCapacity(capacity) }

    mutating func objectStart() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }
    mutating func objectEnd() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }
    mutating func arrayStart() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }
    mutating func arrayEnd() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    mutating func key(_ name: String) {
        separate()
        appendString(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func string(_ value: String?) {
        separate()
        if let value { appendString(value) } else { appendNull() }
        needsComma = true
    }

    mutating func int(_ value: Int64?) {
        separate()
        if let value { bytes.append(contentsOf: String(value).utf8) } else { appendNull() }
        needsComma = true
    }

    mutating func bool(_ value: Bool) {
        separate()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
        needsComma = true
    }

    /// Already-encoded JSON, trusted as is: only for text PostgreSQL produced from a `jsonb` column.
    mutating func raw(_ json: String?) {
        separate()
        if let json { bytes.append(contentsOf: json.utf8) } else { appendNull() }
        needsComma = true
    }

    mutating func field(_ name: String, _ value: String?) {
        key(name)
        string(value)
    }
    mutating func field(_ name: String, _ value: Int64?) {
        key(name)
        int(value)
    }
    mutating func field(_ name: String, _ value: Int?) {
        key(name)
        int(value.map(Int64.init))
    }
    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bool(value)
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func appendNull() { bytes.append(contentsOf: "null".utf8) }

    /// RFC 8259 string: quote, backslash and control characters escaped; everything else as UTF-8.
    private mutating func appendString(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        // Most values (ids, keys, URLs, timestamps) need no escaping: copy them in one go (a memcpy from the
        // string's own UTF-8 storage).
        let copied = value.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied == true {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(byte)
            case UInt8(ascii: "\\"):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(byte)
            case 0x0A:
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "n"))
            case 0x0D:
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "r"))
            case 0x09:
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "t"))
            case 0..<0x20:
                bytes.append(contentsOf: "\\u00".utf8)
                Hex.append(byte, to: &bytes)
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
