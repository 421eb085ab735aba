/// Text from the database made safe to print as one field of one line on an operator's terminal.
///
/// Why: `assets list` prints prediction ids, keys and failure reasons, and those come from outside (a
/// provider's error message, a URL a webhook named). A newline or tab would forge rows or columns in the
/// tab-separated output, and an escape sequence (`ESC [ …`) could rewrite what the terminal shows. Every
/// control character (C0, DEL, C1), the Unicode line separators and the bidirectional overrides are
/// written as escapes instead: `\t`, `\n`, `\r`, `\\`, and `\u{XX}` for the rest.
public enum TerminalText {
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\\": out += "\\\\"
            default:
                if needsEscape(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// Control characters (general category Cc: C0, DEL, C1), U+2028/U+2029, and the bidirectional
    /// embeddings, overrides and isolates; the backslash too, so an escape in the output is never ambiguous.
    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069, 0x5C: return true
        default: return false
        }
    }
}
