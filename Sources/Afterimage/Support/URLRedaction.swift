/// Removes the userinfo of every URL in a text: `https://AKIA…:secret@host/x` becomes `https://***@host/x`.
///
/// Why a scan of whole texts rather than care at each call site: URLs reach log lines and `check-config`
/// from many places (configuration values, libpq's and libcurl's own error messages, a provider's error
/// body, a URL a webhook named), and a credential in one of them must never be written out. The log
/// handler and `check-config` pass everything they print through here, so no caller can forget.
///
/// A URL here is `scheme://authority…` with an RFC 3986 scheme; its authority runs to the first `/`, `?`,
/// `#`, whitespace, quote or angle bracket, and everything before its last `@` is the userinfo. Text
/// without `@` is returned as it is, at the cost of one scan (most log lines).
public enum URLRedaction {
    public static let mask = "***"

    public static func redactingUserInfo(_ text: String) -> String {
        let bytes = text.utf8
        guard bytes.contains(UInt8(ascii: "@")) else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        let array = Array(bytes)
        var index = 0
        var changed = false
        while index < array.count {
            // `://` with a scheme before it: find the authority and its last `@`.
            if array[index] == UInt8(ascii: ":"), index + 2 < array.count, array[index + 1] == UInt8(ascii: "/"),
                array[index + 2] == UInt8(ascii: "/"), hasScheme(endingAt: index, in: array)
            {
                let authorityStart = index + 3
                var end = authorityStart
                var lastAt: Int?
                while end < array.count, !endsAuthority(array[end]) {
                    if array[end] == UInt8(ascii: "@") { lastAt = end }
                    end += 1
                }
                output.append(contentsOf: array[index..<authorityStart])
                if let lastAt {
                    output.append(contentsOf: mask.utf8)
                    output.append(contentsOf: array[lastAt..<end])
                    changed = true
                } else {
                    output.append(contentsOf: array[authorityStart..<end])
                }
                index = end
                continue
            }
            output.append(array[index])
            index += 1
        }
        return changed ? String(decoding: output, as: UTF8.self) : text
    }

    /// A scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`) ends right before `colon`.
    private static func hasScheme(endingAt colon: Int, in bytes: [UInt8]) -> Bool {
        var start = colon
        while start > 0, isSchemeByte(bytes[start - 1]) { start -= 1 }
        // The scheme must begin with a letter; step over leading digits, '+', '-' or '.'.
        while start < colon, !isLetter(bytes[start]) { start += 1 }
        return start < colon
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }

    private static func isSchemeByte(_ byte: UInt8) -> Bool {
        isLetter(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }

    private static func endsAuthority(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"),
            UInt8(ascii: "\r"), UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "`"):
            return true
        default:
            return false
        }
    }
}
