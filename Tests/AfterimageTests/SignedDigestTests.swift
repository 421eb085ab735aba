import Crypto
import Foundation
import Logging
import MicroHTTP
import Primitives
import TestSupport
import Testing

@testable import Afterimage

/// Ed25519 as Ideogram and fal sign: the RFC 8032 vector through swift-crypto, the shared vectors through
/// the scheme's own message, and the gate's checks from the head and over the body.
@Suite("Ed25519 webhook signatures")
struct SignedDigestTests {
    static func hex(_ text: String) -> [UInt8] { Hex.decode(text)! }

    /// RFC 8032 §7.1 TEST 1: the secret key's public key, and the signature of the empty message.
    @Test func rfc8032Test1ThroughSwiftCrypto() throws {
        let secret = Self.hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: secret)
        #expect(Hex.encode(key.publicKey.rawRepresentation) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let expected = Self.hex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        #expect(key.publicKey.isValidSignature(expected, for: [UInt8]()))
        #if os(Linux)
            // BoringSSL signs deterministically, as RFC 8032 specifies (Apple's CryptoKit randomises).
            #expect(Array(try key.signature(for: [UInt8]())) == expected)
        #endif
        var forged = expected
        forged[0] ^= 1
        #expect(!key.publicKey.isValidSignature(forged, for: [UInt8]()))
    }

    /// The vectors spell their keys as JSON does (`webhook_id`); the properties are Swift's camel case.
    static var snakeCaseDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    struct Vector: Decodable {
        let privateKeyHex: String
        let publicKeyHex: String
        let jwk: [String: String]
        let headers: [String: String]
        let body: String
        let bodySha256: String
    }

    static func vector(_ provider: String) throws -> Vector {
        let url = TestEnvironment.fixturesDirectory.appendingPathComponent("\(provider)/signature-vector.json")
        return try Self.snakeCaseDecoder.decode(Vector.self, from: Data(contentsOf: url))
    }

    /// The shared vectors: the JWK's `x` is the RFC key, the body's SHA-256 is as stated, and the signature
    /// verifies over the scheme's message (and is what signing it gives, Ed25519 being deterministic).
    @Test(arguments: [("ideogram", IdeogramProvider.headers), ("fal", FalProvider.headers)])
    func sharedVectorsVerify(_ provider: String, _ names: SignedDigestScheme.HeaderNames) throws {
        let vector = try Self.vector(provider)
        let publicKey = try #require(JSONWebKeySet.publicKey(base64URL: vector.jwk["x"]!))
        #expect(Hex.encode(publicKey.rawRepresentation) == vector.publicKeyHex)
        let body = Array(vector.body.utf8)
        #expect(Hex.encode(SHA256.hash(data: body)) == vector.bodySha256)
        // Checked with a clock at the vector's own time (it was signed in the past).
        let signedAt = Date(timeIntervalSince1970: TimeInterval(Int64(vector.headers[names.timestamp]!)!))
        let signed = try SignedDigestScheme(headers: names).begin(
            header: { name in
                vector.headers.first { $0.key.lowercased() == name.lowercased() }?.value
            }, now: signedAt)
        let message = signed.message(bodySHA256Hex: vector.bodySha256)
        #expect(publicKey.isValidSignature(signed.signature, for: message))
        #expect(!publicKey.isValidSignature(signed.signature, for: signed.message(bodySHA256Hex: String(repeating: "0", count: 64))))
        #if os(Linux)
            let secret = try Curve25519.Signing.PrivateKey(rawRepresentation: Self.hex(vector.privateKeyHex))
            #expect(Hex.encode(try secret.signature(for: message)) == vector.headers[names.signature])
        #endif
        if provider == "ideogram" { #expect(signed.keyID == vector.jwk["kid"]) }
    }

    @Test func keySetsParseLikeTheProvidersPublishThem() throws {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        let document = Array(
            #"""
            {"keys":[{"kty":"RSA","n":"xyz","e":"AQAB","kid":"rsa"},
                     {"kty":"OKP","crv":"Ed25519","use":"sig","kid":"v1","x":"\#(x)","alg":"EdDSA"},
                     {"kty":"OKP","crv":"Ed25519","x":"\#(x)="},
                     {"kty":"OKP","crv":"X25519","kid":"ecdh","x":"\#(x)"}]}
            """#.utf8)
        let keys = try JSONWebKeySet.keys(from: document)
        // Ideogram's (with a kid) and fal's (padded, no kid); the RSA and X25519 keys are not signing keys here.
        #expect(keys.map(\.id) == ["v1", nil])
        #expect(throws: (any Error).self) { try JSONWebKeySet.keys(from: Array(#"{"keys":[]}"#.utf8)) }
        #expect(throws: (any Error).self) { try JSONWebKeySet.keys(from: Array("<html>".utf8)) }
        #expect(JSONWebKeySet.publicKey(base64URL: "not a key") == nil)
        #expect(JSONWebKeySet.publicKey(base64URL: String(x.dropLast(4))) == nil, "a key is 32 bytes")
    }

    // MARK: The gate

    static let key = Curve25519.Signing.PrivateKey()

    static func keySet(pinned: [Curve25519.Signing.PrivateKey] = [key], jwksURL: String = "http://127.0.0.1:9/jwks.json") -> WebhookKeySet {
        let pins = pinned.map {
            Data($0.publicKey.rawRepresentation).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        return WebhookKeySet(
            provider: .ideogram, jwksURL: jwksURL, pinned: pins, cacheFile: nil,
            policy: { FetchPolicy(allowedHosts: ["127.0.0.1"], allowedSchemes: ["http"], allowPrivateNetworks: true, maxBytes: 1 << 20) },
            fetchTimeout: .seconds(2), logger: Logger(label: "test"))
    }

    static func gate(_ keys: WebhookKeySet) -> WebhookGate {
        WebhookGate(
            provider: .ideogram, authentication: .signedDigest(SignedDigestScheme(headers: IdeogramProvider.headers), keys: keys),
            logger: Logger(label: "test"))
    }

    static func headers(
        _ body: [UInt8], key: Curve25519.Signing.PrivateKey = key, kid: String? = "k1",
        at timestamp: Int64 = Int64(Date().timeIntervalSince1970)
    ) throws -> [String: String] {
        let message = Array("gen1\nuser1\n\(timestamp)\n\(Hex.encode(SHA256.hash(data: body)))".utf8)
        var headers = [
            "X-Ideogram-Webhook-Generation-Id": "gen1", "X-Ideogram-Webhook-User-Id": "user1",
            "X-Ideogram-Webhook-Timestamp": String(timestamp),
            "X-Ideogram-Webhook-Signature": Hex.encode(try key.signature(for: message)),
        ]
        if let kid { headers["X-Ideogram-Webhook-Key-Id"] = kid }
        return headers
    }

    func admit(_ gate: WebhookGate, _ headers: [String: String]) -> Admission {
        gate.admit(RequestHead(method: "POST", path: "/v1/webhooks/ideogram", headers: headers, contentLength: 100))
    }

    @Test func missingOrStaleHeadersAreRefusedFromTheHeadAlone() throws {
        let gate = Self.gate(Self.keySet())
        let body = Array("{}".utf8)
        guard case .admit = admit(gate, try Self.headers(body)) else {
            Issue.record("a signed head was refused")
            return
        }
        for name in [
            "X-Ideogram-Webhook-Generation-Id", "X-Ideogram-Webhook-User-Id", "X-Ideogram-Webhook-Timestamp",
            "X-Ideogram-Webhook-Signature",
        ] {
            var partial = try Self.headers(body)
            partial[name] = nil
            guard case .refuse(let response) = admit(gate, partial) else {
                Issue.record("admitted without \(name)")
                continue
            }
            #expect(response.status == 401)
        }
        guard case .refuse(let stale) = admit(gate, try Self.headers(body, at: Int64(Date().timeIntervalSince1970) - 301)) else {
            Issue.record("a stale timestamp was admitted")
            return
        }
        #expect(stale.status == 401)
        var short = try Self.headers(body)
        short["X-Ideogram-Webhook-Signature"] = "abcd"
        guard case .refuse(let malformed) = admit(gate, short) else {
            Issue.record("a short signature was admitted")
            return
        }
        #expect(malformed.status == 401)
    }

    /// The body is hashed piece by piece; a verified body reaches the handler with its digest, a tampered
    /// one or another key's signature is refused (pinned keys are never fetched).
    @Test func theBodyIsHashedAsItArrives() throws {
        let gate = Self.gate(Self.keySet())
        let body = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        guard case .admit(let check?) = admit(gate, try Self.headers(body)) else {
            Issue.record("not admitted with a check")
            return
        }
        for start in stride(from: 0, to: body.count, by: 4096) { body[start..<min(start + 4096, body.count)].withUnsafeBytes { check.update($0) } }
        #expect(check.finish() == nil)
        guard case .verified(let verified)? = check.result as? SignedDigestVerdict else {
            Issue.record("no verdict")
            return
        }
        #expect(verified.bodySHA256 == Hex.encode(SHA256.hash(data: body)))

        guard case .admit(let tampered?) = admit(gate, try Self.headers(body)) else { return }
        var changed = body
        changed[50_000] ^= 1
        changed.withUnsafeBytes { tampered.update($0) }
        #expect(tampered.finish()?.status == 401)

        guard case .admit(let other?) = admit(gate, try Self.headers(body, key: Curve25519.Signing.PrivateKey())) else { return }
        body.withUnsafeBytes { other.update($0) }
        #expect(other.finish()?.status == 401)
    }

    /// No key cached and none fetchable (the JWKS does not answer): 503 + Retry-After, never 401, first from
    /// the handler's fetch and then, within the refetch interval, from the head before any body is read.
    @Test func withoutAnyKeyTheAnswerIs503() throws {
        let keys = Self.keySet(pinned: [])
        let gate = Self.gate(keys)
        let body = Array("{}".utf8)
        guard case .admit(let check?) = admit(gate, try Self.headers(body)) else {
            Issue.record("refused before trying to fetch")
            return
        }
        body.withUnsafeBytes { check.update($0) }
        #expect(check.finish() == nil, "undecided: the handler fetches")
        guard case .undecided(let verdict)? = check.result as? SignedDigestVerdict else {
            Issue.record("not undecided")
            return
        }
        let outcome = keys.refreshAndVerify(
            verdict.signed.signature, message: verdict.signed.message(bodySHA256Hex: verdict.bodySHA256),
            keyID: verdict.signed.keyID)
        guard case .unavailable(let retryAfter) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect((1...60).contains(retryAfter))
        guard case .refuse(let early) = admit(gate, try Self.headers(body)) else {
            Issue.record("admitted while no key can be had")
            return
        }
        #expect(early.status == 503)
        #expect(early.headers.contains { $0.0 == "Retry-After" })
    }
}

@Suite("Ideogram and fal bodies")
struct SignedProviderBodyTests {
    static func fixture(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent(path)))
    }

    static func keys() -> WebhookKeySet {
        WebhookKeySet(
            provider: .ideogram, jwksURL: "http://127.0.0.1:9/", pinned: [], cacheFile: nil,
            policy: { FetchPolicy(Settings.Fetch()) }, logger: Logger(label: "test"))
    }

    static func delivery(_ provider: ProviderName, _ body: [UInt8], subject: String = "header-id") -> WebhookDelivery {
        WebhookDelivery(
            provider: provider, deliveryID: "\(subject):x", subject: subject,
            timestamp: Date(timeIntervalSince1970: 1_800_000_000), body: body, receivedAt: Date(timeIntervalSince1970: 1_800_000_005))
    }

    @Test func ideogramImagesWithAndWithoutURLs() throws {
        let provider = IdeogramProvider(keys: Self.keys())
        let body = try Self.fixture("ideogram/withheld.json")
        let meaning = try provider.interpret(Self.delivery(.ideogram, body))
        #expect(meaning.prediction.id == "Qm9uam91ckxlTW9uZGU")
        #expect(meaning.prediction.status == .succeeded)
        // The withheld image is kept in the output, not queued.
        #expect(meaning.assets.map(\.pointer) == ["/0/url"])
        #expect(meaning.assets[0].seed == 771882)
        let created = try #require(Date(rfc3339: "2026-11-21T10:00:00Z"))
        #expect(meaning.assets[0].deadline == created.addingTimeInterval(86400), "created + ideogram.retention")
        #expect(meaning.prediction.createdAt == created)
        let output = try #require(meaning.prediction.outputJSON)
        let items = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
        #expect(items.count == 2 && items[1]["is_image_safe"] as? Bool == false)

        let vector = try JSONDecoder().decode(
            SignedDigestTests.Vector.self,
            from: Data(Self.fixture("ideogram/signature-vector.json")))
        let documented = try provider.interpret(Self.delivery(.ideogram, Array(vector.body.utf8)))
        #expect(documented.prediction.id == "xtdZiqPwRxqY1Y7NExFmzB")
        #expect(documented.assets.map(\.pointer) == ["/0/url"])
        if case .url(let url) = documented.assets[0].source {
            #expect(url == "https://ideogram.ai/api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png")
        } else {
            Issue.record("not a download")
        }
        // request_id stands for generation_id; without either the signed id names it.
        #expect(try provider.interpret(Self.delivery(.ideogram, Array(#"{"request_id":"r1","data":[]}"#.utf8))).prediction.id == "r1")
        #expect(try provider.interpret(Self.delivery(.ideogram, Array(#"{"data":[]}"#.utf8), subject: "h1")).prediction.id == "h1")
        #expect(throws: UnreadableDelivery.self) { try provider.interpret(Self.delivery(.ideogram, Array(#"{"data":"x"}"#.utf8))) }
        #expect(throws: UnreadableDelivery.self) { try provider.interpret(Self.delivery(.ideogram, Array(#"{"generation_id":"../x"}"#.utf8))) }
    }

    @Test func falEveryURLInThePayload() throws {
        let provider = FalProvider(keys: Self.keys())
        let images = try provider.interpret(Self.delivery(.fal, try Self.fixture("fal/ok-images.json")))
        #expect(images.prediction.id == "123e4567-e89b-12d3-a456-426614174000")
        #expect(images.prediction.status == .succeeded)
        #expect(images.assets.map(\.pointer) == ["/images/0/url"])
        #expect(images.assets.allSatisfy { $0.deadline == nil }, "fal files do not expire unless fal.retention says so")

        let video = try provider.interpret(Self.delivery(.fal, try Self.fixture("fal/ok-video.json")))
        #expect(video.assets.map(\.pointer) == ["/audio_file/url", "/video/url"])

        let failed = try provider.interpret(Self.delivery(.fal, try Self.fixture("fal/error.json")))
        #expect(failed.prediction.status == .failed)
        #expect(failed.prediction.error == "Invalid status code: 422")
        #expect(failed.assets.isEmpty, "ERROR: recorded, nothing fetched")
        #expect(failed.prediction.outputJSON?.contains("field required") == true)

        let unserialisable = try provider.interpret(Self.delivery(.fal, try Self.fixture("fal/payload-error.json")))
        #expect(unserialisable.assets.isEmpty)
        #expect(unserialisable.prediction.outputJSON == nil)
        #expect(unserialisable.prediction.error?.hasPrefix("Response payload is not JSON serializable") == true)

        let retained = FalProvider(keys: Self.keys(), retentionSeconds: 3600)
        let due = try retained.interpret(Self.delivery(.fal, try Self.fixture("fal/ok-images.json")))
        #expect(due.assets[0].deadline == Date(timeIntervalSince1970: 1_800_000_000 + 3600), "signed time + fal.retention")
        #expect(throws: UnreadableDelivery.self) {
            try provider.interpret(Self.delivery(.fal, Array(#"{"request_id":"r","status":"IN_PROGRESS"}"#.utf8)))
        }
    }

    @Test func archiveRequests() throws {
        let valid = try ArchiveRequest.parse(
            Array(#"{"id":"img-1","urls":["https://a.example/x.png"],"deadline":"2026-11-21T10:00:00Z","metadata":{"app":"t"}}"#.utf8))
        #expect(valid.urls == ["https://a.example/x.png"])
        #expect(valid.deadline == Date(rfc3339: "2026-11-21T10:00:00Z"))
        #expect(valid.metadataJSON == #"{"app":"t"}"#)
        for bad in [
            #"{"id":"a/b","urls":["https://x/y"]}"#, #"{"id":"a","urls":[]}"#, #"{"id":"a","urls":[1]}"#,
            #"{"id":"a","urls":["https://x/y"],"deadline":"tomorrow"}"#, #"{"id":"a","urls":["https://x/y"],"metadata":[1]}"#,
            "[]",
        ] {
            #expect(throws: ArchiveRequest.Invalid.self, "\(bad)") { try ArchiveRequest.parse(Array(bad.utf8)) }
        }
        let big = String(repeating: "x", count: 17_000)
        #expect(throws: ArchiveRequest.Invalid.self) {
            try ArchiveRequest.parse(Array(#"{"id":"a","urls":["https://x/y"],"metadata":{"note":"\#(big)"}}"#.utf8))
        }
    }

    /// 13.12: a prediction's outputs are numbered in walk order; outputs found later take the next free
    /// number; the same output again is not queued twice; other bytes at a known pointer are a new output.
    @Test func outputNumbering() {
        func url(_ pointer: String, _ url: String) -> AssetSpec { AssetSpec(pointer: pointer, source: .url(url), deadline: nil) }
        let fresh = DeliveryRecorder.plan([url("/0", "a"), url("/1", "b"), url("/0", "a")], predictionID: "p", existing: [:], deliveryID: "d")
        #expect(fresh.map(\.index) == [0, 1])
        let existing = [
            "/0": DeliveryRecorder.ExistingAsset(index: 0, bytes: nil, sourceURL: "a"),
            "/2": DeliveryRecorder.ExistingAsset(index: 5, bytes: "sha-1", sourceURL: "inline"),
        ]
        let later = DeliveryRecorder.plan([url("/0", "a"), url("/1", "b"), url("/3", "c")], predictionID: "p", existing: existing, deliveryID: "d")
        #expect(later.map(\.spec.pointer) == ["/1", "/3"])
        #expect(later.map(\.index) == [6, 7], "after the highest number, never a taken one")
        var same = AssetSpec(pointer: "/2", source: .inline(marker: nil, decoded: nil), deadline: nil, identity: .bytes("sha-1"))
        #expect(DeliveryRecorder.plan([same], predictionID: "p", existing: existing, deliveryID: "d").isEmpty)
        same.identity = .bytes("sha-2")
        let other = DeliveryRecorder.plan([same], predictionID: "p", existing: existing, deliveryID: "d")
        #expect(other.count == 1 && other[0].qualified && other[0].index == 6)
    }
}
