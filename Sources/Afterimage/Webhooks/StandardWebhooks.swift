import Crypto
import Foundation

/// Verifies Standard Webhooks signatures (https://www.standardwebhooks.com), the scheme Replicate uses
/// and the one Afterimage asks apps to use when they forward Stability results.
///
/// Signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 keyed with the base64
/// secret after `whsec_`; the header carries space-separated `v1,<base64>` entries and any may match, so a
/// provider can sign with old and new secrets during a rotation, and we can hold several secrets too.
public struct StandardWebhooksVerifier: Sendable {
    public struct Failure: Error, CustomStringConvertible, Sendable, Equatable {
        public enum Code: String, Sendable { case missingHeaders = "signature_missing", staleTimestamp = "timestamp_out_of_tolerance", invalid = "signature_invalid" }
        public let code: Code
        public let message: String
        public var description: String { message }
    }

    /// Five minutes either way, as the specification recommends: replays of old deliveries are refused.
    public static let defaultTolerance: TimeInterval = 300

    /// One HMAC already keyed per secret: each verification copies it and feeds the message, instead of
    /// hashing the key again (it runs for every delivery).
    private let keyed: [HMAC<SHA256>]
    public let tolerance: TimeInterval

    /// `secrets` are `whsec_<base64>` strings (already validated by the configuration loader); an entry that
    /// does not decode is skipped rather than turned into a key that could match nothing useful.
    public init(secrets: [String], tolerance: TimeInterval = defaultTolerance) {
        keyed = secrets.compactMap { secret in
            let body = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
            return Data(base64Encoded: body).map { HMAC<SHA256>(key: SymmetricKey(data: $0)) }
        }
        self.tolerance = tolerance
    }

    public var hasSecrets: Bool { !keyed.isEmpty }

    /// Checks the three headers against the raw body. `now` is injectable for tests.
    public func verify(id: String?, timestamp: String?, signature: String?, body: [UInt8], now: Date = Date()) throws(Failure) {
        guard let id, !id.isEmpty, let timestamp, let signature, !signature.isEmpty else {
            throw Failure(code: .missingHeaders, message: "webhook-id, webhook-timestamp and webhook-signature headers are required")
        }
        guard let seconds = Int64(timestamp) else {
            throw Failure(code: .invalid, message: "webhook-timestamp is not a Unix time in seconds")
        }
        guard abs(now.timeIntervalSince1970 - TimeInterval(seconds)) <= tolerance else {
            throw Failure(code: .staleTimestamp, message: "webhook-timestamp is more than \(Int(tolerance)) s away from now")
        }
        guard !keyed.isEmpty else {
            throw Failure(code: .invalid, message: "no webhook secret is configured for this route")
        }
        let prefix = Array("\(id).\(timestamp).".utf8)
        let candidates: [[UInt8]] = signature.split(separator: " ").compactMap { entry in
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, parts[0] == "v1", let decoded = Data(base64Encoded: String(parts[1])) else { return nil }
            return Array(decoded)
        }
        // Every key against every candidate, without an early exit that would time the match.
        var matched = false
        for key in keyed {
            var mac = key
            mac.update(data: prefix)
            mac.update(data: body)  // the body is hashed where it lies, not copied after the prefix
            let expected = Array(mac.finalize())
            for candidate in candidates where constantTimeEquals(expected, candidate) {
                matched = true
            }
        }
        guard matched else { throw Failure(code: .invalid, message: "no webhook-signature entry matches") }
    }

    /// Produces the header value for `body`; used by tests and by tools that forward results to us.
    public static func sign(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String {
        let raw = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        let key = SymmetricKey(data: Data(base64Encoded: raw) ?? Data())
        var signed = Array("\(id).\(timestamp).".utf8)
        signed.append(contentsOf: body)
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: signed, using: key)).base64EncodedString()
    }
}

/// Compares two byte strings in time that depends only on their lengths, so an attacker learns nothing
/// from how long a wrong signature or token takes to refuse.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}
