import Foundation

/// Durations as people type them on a command line: `90s`, `45m`, `2h`, `1d`, `1h30m`, or plain seconds.
public enum DurationText {
    /// Seconds, or nil when the text is not a positive duration of at most 365 days.
    public static func seconds(_ text: String) -> Int? {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !text.isEmpty, text.count <= 32 else { return nil }
        if let plain = Int(text) { return (1...365 * 86400).contains(plain) ? plain : nil }
        var total = 0
        var digits = ""
        for character in text {
            if character.isASCII, character.isNumber {
                digits.append(character)
                continue
            }
            let unit: Int
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: return nil
            }
            guard let value = Int(digits), value <= 365 * 86400 else { return nil }
            total += value * unit
            digits = ""
        }
        guard digits.isEmpty, (1...365 * 86400).contains(total) else { return nil }
        return total
    }
}
