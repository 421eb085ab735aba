import Crypto
import Foundation
import MicroHTTP
import Primitives

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
            if entry.hasPrefix("sha256:") {
                let digest = Hex.decode(entry.dropFirst("sha256:".count))
                return digest?.count == 32 ? digest : nil
            }
            return entry.isEmpty ? nil : Array(SHA256.hash(data: Array(entry.utf8)))
        }
    }

    public var isConfigured: Bool { !digests.isEmpty }

    /// Checks an `Authorization` header value. The token itself never leaves this function.
    /// Works on the header's bytes (it runs for every lookup): blanks are space and tab, as in HTTP, and the
    /// scheme name is compared case-insensitively in ASCII.
    public func check(authorization: String?) -> Outcome {
        guard let authorization else { return .missing }
        guard authorization.utf8.count <= 2 * Self.maxHeaderBytes else { return .invalid }
        let bytes = Array(authorization.utf8)
        func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
        var start = 0
        var end = bytes.count
        while start < end, isBlank(bytes[start]) { start += 1 }
        while end > start, isBlank(bytes[end - 1]) { end -= 1 }
        guard start < end else { return .missing }
        guard end - start <= Self.maxHeaderBytes else { return .invalid }
        guard let space = bytes[start..<end].firstIndex(of: 0x20) else {
            return Self.isBearer(bytes[start..<end]) ? .invalid : .missing  // "Bearer" alone: an empty token
        }
        guard Self.isBearer(bytes[start..<space]) else {
            return .missing  // another scheme (Basic…): not a bearer credential
        }
        var tokenStart = space + 1
        while tokenStart < end, isBlank(bytes[tokenStart]) { tokenStart += 1 }
        let token = bytes[tokenStart..<end]
        guard !token.isEmpty, !token.contains(0x20) else { return .invalid }
        let presented = Array(SHA256.hash(data: token))
        var matched = false
        for digest in digests where constantTimeEquals(digest, presented) { matched = true }
        return matched ? .allowed : .invalid
    }

    private static func isBearer(_ scheme: ArraySlice<UInt8>) -> Bool {
        scheme.count == 6 && zip(scheme, "bearer".utf8).allSatisfy { $0 | 0x20 == $1 }
    }
}

/// The lookup API's 401: no bearer token, or one that matches none configured. The challenge header tells
/// a client which scheme to use (RFC 6750); nothing of the presented token is echoed.
enum TokenRefusal: ResponseError, Equatable {
    case missing
    case invalid

    var status: Int { 401 }

    var errorCode: String {
        switch self {
        case .missing: "token_missing"
        case .invalid: "token_invalid"
        }
    }

    var message: String {
        switch self {
        case .missing: "an Authorization: Bearer token is required"
        case .invalid: "the bearer token is not valid"
        }
    }

    var headers: [(String, String)] {
        switch self {
        case .missing: [("WWW-Authenticate", #"Bearer realm="afterimage""#)]
        case .invalid: [("WWW-Authenticate", #"Bearer realm="afterimage", error="invalid_token""#)]
        }
    }
}
