import Foundation
import Primitives

/// The Ed25519 webhook signature Ideogram and fal use, one scheme under two sets of header names: the
/// provider signs the UTF-8 of `{id}\n{user id}\n{timestamp}\n{lowercase hex SHA-256 of the raw body}` and
/// sends the 64-byte signature as lowercase hex. Signing a digest of the body rather than the body lets
/// the body be hashed as it arrives: nothing is held to check it.
///
/// Ideogram: https://developer.ideogram.ai/ideogram-api/webhooks (it also names the signing key, a hint
/// for which key to try first). fal: https://docs.fal.ai/model-apis/model-endpoints/webhooks.
public struct SignedDigestScheme: Sendable {
    public struct HeaderNames: Sendable, Equatable {
        /// The signed id (Ideogram's generation id, fal's request id).
        public var id: String
        public var user: String
        /// Unix seconds, decimal.
        public var timestamp: String
        public var signature: String
        /// The signing key's `kid`, when the provider names it (Ideogram does, fal does not).
        public var keyID: String?

        public init(id: String, user: String, timestamp: String, signature: String, keyID: String? = nil) {
            self.id = id
            self.user = user
            self.timestamp = timestamp
            self.signature = signature
            self.keyID = keyID
        }
    }

    public let headers: HeaderNames
    /// Deliveries signed longer ago (or later) than this are refused: replays of old ones. Both providers
    /// ask for five minutes.
    public let tolerance: TimeInterval

    public init(headers: HeaderNames, tolerance: TimeInterval = StandardWebhooksVerifier.defaultTolerance) {
        self.headers = headers
        self.tolerance = tolerance
    }

    /// Longest id or user id kept (both are short ids; the delivery id is `{id}:{sha256}`).
    static let maxIDBytes = 192

    /// What the head of a signed request says, checked: everything but the body's part of the message.
    public struct Signed: Sendable {
        public let id: String
        public let user: String
        /// As sent (it is signed as text).
        public let timestamp: String
        public let seconds: Int64
        public let signature: [UInt8]
        public let keyID: String?

        /// The signed message, once the body's SHA-256 is known.
        public func message(bodySHA256Hex: String) -> [UInt8] {
            Array("\(id)\n\(user)\n\(timestamp)\n\(bodySHA256Hex)".utf8)
        }
    }

    /// Checks what can be checked before the body: every header present, the timestamp within the
    /// tolerance, the signature 64 bytes of hex. A request failing here is refused without reading its body.
    public func begin(header: (String) -> String?, now: Date = Date()) throws(StandardWebhooksVerifier.Failure) -> Signed {
        let names = [headers.id, headers.user, headers.timestamp, headers.signature]
        guard let id = header(headers.id), !id.isEmpty, let user = header(headers.user), !user.isEmpty,
            let timestamp = header(headers.timestamp), let signatureHex = header(headers.signature), !signatureHex.isEmpty
        else {
            throw .init(code: .missingHeaders, message: "the \(names.joined(separator: ", ")) headers are required")
        }
        guard id.utf8.count <= Self.maxIDBytes, user.utf8.count <= Self.maxIDBytes,
            !id.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }), !user.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F })
        else {
            throw .init(code: .invalid, message: "\(headers.id) and \(headers.user) must be short printable ids")
        }
        guard let seconds = Int64(timestamp) else {
            throw .init(code: .invalid, message: "\(headers.timestamp) is not a Unix time in seconds")
        }
        guard abs(now.timeIntervalSince1970 - TimeInterval(seconds)) <= tolerance else {
            throw .init(code: .staleTimestamp, message: "\(headers.timestamp) is more than \(Int(tolerance)) s away from now")
        }
        guard let signature = Hex.decode(signatureHex), signature.count == 64 else {
            throw .init(code: .invalid, message: "\(headers.signature) is not a 64-byte Ed25519 signature in hex")
        }
        let keyID = headers.keyID.flatMap { header($0) }.flatMap { $0.isEmpty || $0.utf8.count > 256 ? nil : $0 }
        return Signed(id: id, user: user, timestamp: timestamp, seconds: seconds, signature: signature, keyID: keyID)
    }
}

/// What an Ed25519 body check learned, handed to the route's handler (`Request.bodyCheckResult`).
enum SignedDigestVerdict: Sendable {
    /// A cached key verified the signature.
    case verified(Verified)
    /// No cached key did, but fetching the key set again may give one that does (a new `kid`, a rotation):
    /// the handler decides on a handler pool thread, never on the event thread.
    case undecided(Verified)

    /// The request's signed parts and its body's digest.
    struct Verified: Sendable {
        let signed: SignedDigestScheme.Signed
        let bodySHA256: String
    }
}
