import Crypto
import Foundation

/// A provider's published webhook keys (RFC 7517 JWKS, RFC 8037 `OKP` keys): `{"keys": [{"kty": "OKP",
/// "crv": "Ed25519", "kid": …, "x": base64url}]}`. Keys of other types are skipped, so a set that also
/// publishes others still works.
public enum JSONWebKeySet {
    /// One Ed25519 key; `id` is its `kid` (fal publishes none).
    public struct Key: Sendable {
        public let id: String?
        public let publicKey: Curve25519.Signing.PublicKey

        public init(id: String?, publicKey: Curve25519.Signing.PublicKey) {
            self.id = id
            self.publicKey = publicKey
        }
    }

    /// A key set larger than this is not a provider's webhook keys.
    static let maxBytes = 64 << 10
    static let maxKeys = 64

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// The Ed25519 keys of a JWKS document. Throws when it is not a JWKS or holds no Ed25519 key.
    static func keys(from document: [UInt8]) throws -> [Key] {
        guard document.count <= maxBytes else { throw Invalid(description: "the key set is larger than \(maxBytes) bytes") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(document)) as? [String: Any],
            let entries = object["keys"] as? [Any]
        else {
            throw Invalid(description: "not a JSON Web Key Set (no \"keys\" array)")
        }
        var keys: [Key] = []
        for case let entry as [String: Any] in entries.prefix(maxKeys) {
            guard entry["kty"] as? String == "OKP", entry["crv"] as? String == "Ed25519", let x = entry["x"] as? String,
                let key = publicKey(base64URL: x)
            else { continue }
            keys.append(Key(id: entry["kid"] as? String, publicKey: key))
        }
        guard !keys.isEmpty else { throw Invalid(description: "the key set holds no Ed25519 key") }
        return keys
    }

    /// A 32-byte Ed25519 public key from base64url, with or without padding (fal's published set pads it).
    public static func publicKey(base64URL text: String) -> Curve25519.Signing.PublicKey? {
        guard let bytes = base64URLDecode(text), bytes.count == 32 else { return nil }
        return try? Curve25519.Signing.PublicKey(rawRepresentation: bytes)
    }

    static func base64URLDecode(_ text: String) -> [UInt8]? {
        var standard = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while standard.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map(Array.init)
    }
}
