/// Prediction ids become a segment of object keys (`{provider}/{id}/{n}.ext`) and of lookup URLs, so an
/// id that could name another place is refused at intake (400, the body kept raw) instead of stored.
enum PredictionID {
    static let maxBytes = 128
    /// The refusal's message.
    static let rule = "a prediction id must be 1 to \(maxBytes) bytes, not \".\" or \"..\", without /, \\ or control characters"

    /// Replicate's ids are 26 lower-case base32 characters; this only keeps out what would break a key:
    /// empty, `.`, `..`, `/`, `\`, control characters (C0, DEL, C1) and more than `maxBytes` bytes.
    static func isSafe(_ id: String) -> Bool {
        guard (1...maxBytes).contains(id.utf8.count), id != ".", id != ".." else { return false }
        return !id.unicodeScalars.contains { scalar in
            scalar == "/" || scalar == "\\" || scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
        }
    }
}
