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
        public enum Code: String, Sendable {
            case missingHeaders = "signature_missing"
            case staleTimestamp = "timestamp_out_of_tolerance"
            case invalid = "signature_invalid"
        }
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

    /// The names of the three headers. Standard Webhooks' own are the default; a provider that sends the
    /// same scheme under other names (Svix sends `svix-id`, `svix-timestamp`, `svix-signature`) gets its own.
    public struct HeaderNames: Sendable, Equatable {
        public var id: String
        public var timestamp: String
        public var signature: String

        public init(id: String, timestamp: String, signature: String) {
            self.id = id
            self.timestamp = timestamp
            self.signature = signature
        }

        public static let standard = HeaderNames(id: "webhook-id", timestamp: "webhook-timestamp", signature: "webhook-signature")
    }

    /// A verification under way: the headers are checked and the signed prefix hashed; the body is fed
    /// as it arrives and `finish()` says whether any signature entry matched. Lets a server check a body
    /// while receiving it, without holding it first.
    public struct Verification: Sendable {
        private var macs: [HMAC<SHA256>]
        private let candidates: [[UInt8]]

        fileprivate init(macs: [HMAC<SHA256>], candidates: [[UInt8]]) {
            self.macs = macs
            self.candidates = candidates
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            for index in macs.indices { macs[index].update(data: bytes) }
        }

        public mutating func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        public func finish() throws(Failure) {
            // Every key against every candidate, without an early exit that would time the match.
            var matched = false
            for mac in macs {
                let expected = Array(mac.finalize())
                for candidate in candidates where constantTimeEquals(expected, candidate) {
                    matched = true
                }
            }
            guard matched else { throw Failure(code: .invalid, message: "no webhook-signature entry matches") }
        }
    }

    /// Checks what can be checked before the body: all three headers present, the timestamp a Unix time
    /// within the tolerance, a secret configured. A request failing here is refused without reading its body.
    public func begin(id: String?, timestamp: String?, signature: String?, now: Date = Date()) throws(Failure) -> Verification {
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
        let macs = keyed.map { key in
            var mac = key
            mac.update(data: prefix)
            return mac
        }
        return Verification(macs: macs, candidates: candidates)
    }

    /// Checks the three headers against the raw body. `now` is injectable for tests.
    public func verify(id: String?, timestamp: String?, signature: String?, body: [UInt8], now: Date = Date()) throws(Failure) {
        var verification = try begin(id: id, timestamp: timestamp, signature: signature, now: now)
        verification.update(body)  // the body is hashed where it lies, not copied after the prefix
        try verification.finish()
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
