import Primitives

/// Decodes `%XX` escapes (and, for query text, `+` as space). Returns nil for a malformed escape
/// or bytes that are not UTF-8, so that a bad path is answered 400 rather than guessed at.
func percentDecode(_ text: Substring, plusIsSpace: Bool = false) -> String? {
    let utf8 = Array(text.utf8)
    guard utf8.contains(UInt8(ascii: "%")) || (plusIsSpace && utf8.contains(UInt8(ascii: "+"))) else {
        return String(text)
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(utf8.count)
    var index = 0
    while index < utf8.count {
        let byte = utf8[index]
        if byte == UInt8(ascii: "%") {
            guard index + 2 < utf8.count, let high = Hex.value(of: utf8[index + 1]), let low = Hex.value(of: utf8[index + 2]) else {
                return nil
            }
            bytes.append(high << 4 | low)
            index += 3
        } else {
            bytes.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            index += 1
        }
    }
    return String(validating: bytes, as: UTF8.self)
}
