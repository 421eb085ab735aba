import Crypto
import Foundation

/// Bearer tokens for the lookup API (`api.tokens`).
///
/// Only SHA-256 digests are kept in memory: a configured `sha256:<hex>` entry is used as is, a plain one is
/// hashed at start-up. A presented token is hashed and compared with every digest in constant time and
/// without an early exit, so neither the comparison nor the position of the matching entry can be timed.
/// Hashing first also makes the compared lengths fixed (32 bytes), whatever length the client sends.
///
/// With no tokens configured every request is refused: the lookup API hands out URLs to stored outputs,
/// so it is never open by default.
public struct BearerAuthenticator: Sendable {
    public enum Outcome: Sendable, Equatable {
        case allowed
        /// No `Authorization: Bearer …` header at all.
        case missing
        /// A bearer token that matches no configured token (or a malformed header).
        case invalid
    }

    /// Longest `Authorization` header considered; anything longer is refused without hashing.
    public static let maxHeaderBytes = 4096

    private let digests: [[UInt8]]

    /// `tokens` are plain tokens or `sha256:<64 hex>` digests, as validated by the settings loader.
    public init(tokens: [String]) {
        digests = tokens.compactMap { entry in
            if entry.hasPrefix("sha256:") { return Self.bytes(hex: entry.dropFirst("sha256:".count)) }
            return entry.isEmpty ? nil : Array(SHA256.hash(data: Array(entry.utf8)))
        }
    }

    public var isConfigured: Bool { !digests.isEmpty }

    /// Checks an `Authorization` header value. The token itself never leaves this function.
    public func check(authorization: String?) -> Outcome {
        guard let header = authorization?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { return .missing }
        guard header.utf8.count <= Self.maxHeaderBytes else { return .invalid }
        guard let space = header.firstIndex(of: " ") else {
            return header.lowercased() == "bearer" ? .invalid : .missing  // "Bearer" alone: an empty token
        }
        guard header[..<space].lowercased() == "bearer" else {
            return .missing  // another scheme (Basic…): not a bearer credential
        }
        let token = header[header.index(after: space)...].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, !token.contains(" ") else { return .invalid }
        let presented = Array(SHA256.hash(data: Array(token.utf8)))
        var matched = false
        for digest in digests where constantTimeEquals(digest, presented) { matched = true }
        return matched ? .allowed : .invalid
    }

    private static func bytes(hex: Substring) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
