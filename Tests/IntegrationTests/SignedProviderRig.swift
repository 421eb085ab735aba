import Crypto
import Curl
import Foundation
import TestSupport

@testable import Afterimage

/// A daemon wired for the Ed25519 providers (Ideogram, fal): the fake provider publishes their key set
/// (`/jwks.json`) and serves their output files; the rig signs deliveries as they do.
final class SignedProviderRig: @unchecked Sendable {
    // Owned by one test at a time.
    let harness: ArchiveHarness
    let apiToken = "tok_" + UUID().uuidString
    /// Signing keys by key id.
    var keys: [String: Curve25519.Signing.PrivateKey] = [:]

    init() throws {
        harness = try ArchiveHarness()
    }

    var fake: FakeProvider { harness.fake }
    var jwksURL: String { "http://127.0.0.1:\(fake.port)/jwks.json" }
    /// Where the daemon keeps the fetched key sets (`{workers.spool_dir}/keys`).
    func cacheFile(_ provider: String) -> String { harness.spoolDirectory + "/keys/\(provider).jwks.json" }

    func key(_ id: String) -> Curve25519.Signing.PrivateKey {
        if let key = keys[id] { return key }
        let key = Curve25519.Signing.PrivateKey()
        keys[id] = key
        return key
    }

    static func base64URL(_ bytes: some DataProtocol) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A JWKS document holding these keys (`kid` = their id), as Ideogram publishes one.
    func jwks(_ ids: [String]) -> [UInt8] {
        let entries = ids.map { id in
            ["kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": id, "x": Self.base64URL(key(id).publicKey.rawRepresentation)]
        }
        return Array(try! JSONSerialization.data(withJSONObject: ["keys": entries], options: [.sortedKeys]))
    }

    /// The fake's `/jwks.json` now serves these keys.
    func publish(_ ids: [String]) throws {
        let response = try CurlSession().perform(
            CurlRequest(
                method: "POST", url: "http://127.0.0.1:\(fake.port)/_jwks",
                body: .bytes(jwks(ids))), options: Self.options)
        guard response.status == 200 else { throw TestSupportError("the fake refused the key set") }
    }

    func jwksFetches() throws -> Int { try fake.stats().counts["/jwks.json"] ?? 0 }

    static var options: CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(60)
        return options
    }

    func startDaemon(jwksURL: String? = nil, extra: [String: String] = [:]) throws -> DaemonProcess {
        try harness.startDaemon(
            extra: [
                "AFTERIMAGE_IDEOGRAM_JWKS_URL": jwksURL ?? self.jwksURL,
                "AFTERIMAGE_FAL_JWKS_URL": jwksURL ?? self.jwksURL,
                "AFTERIMAGE_API_TOKENS": apiToken,
            ].merging(extra) { $1 })
    }

    enum Scheme {
        case ideogram, fal

        var headers: SignedDigestScheme.HeaderNames { self == .ideogram ? IdeogramProvider.headers : FalProvider.headers }
        var route: String { self == .ideogram ? "/v1/webhooks/ideogram" : "/v1/webhooks/fal" }
    }

    /// Signs `body` as the provider would (the id, a user id, the timestamp and the body's SHA-256) and
    /// posts it. `keyID` defaults to the signing key's id (fal sends none); `tamper` changes the body after
    /// signing.
    @discardableResult
    func post(
        _ scheme: Scheme, _ body: [UInt8], id: String, to daemon: DaemonProcess, key keyID: String = "k1",
        sentKeyID: String?? = nil, timestamp: Int64 = Int64(Date().timeIntervalSince1970), tamper: Bool = false,
        omit: String? = nil
    ) throws -> CurlResponse {
        let names = scheme.headers
        let digest = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
        let message = Array("\(id)\nuser_afterimage\n\(timestamp)\n\(digest)".utf8)
        let signature = try key(keyID).signature(for: message).map { String(format: "%02x", $0) }.joined()
        var headers = [
            ("Content-Type", "application/json"), (names.id, id), (names.user, "user_afterimage"),
            (names.timestamp, String(timestamp)), (names.signature, signature),
        ]
        if let keyHeader = names.keyID, let sent = sentKeyID ?? keyID { headers.append((keyHeader, sent)) }
        if let omit { headers.removeAll { $0.0 == omit } }
        let sent = tamper ? body + Array(" ".utf8) : body
        return try CurlSession().perform(
            CurlRequest(
                method: "POST", url: "http://127.0.0.1:\(daemon.port)\(scheme.route)",
                headers: headers, body: .bytes(sent)), options: Self.options)
    }

    static func json(_ response: CurlResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    static func text(_ response: CurlResponse) -> String { "\(response.status) \(String(decoding: response.body, as: UTF8.self))" }
}
