import Crypto
import Foundation
import Primitives
import S3
import Testing

@testable import Afterimage

@Suite("Lookup: tokens, presigning parameters, JSON")
struct LookupUnitTests {
    static func hex(_ token: String) -> String { Hex.encode(SHA256.hash(data: Array(token.utf8))) }

    @Test func plainAndHashedTokensAreAccepted() {
        let auth = BearerAuthenticator(tokens: ["alpha-token", "sha256:" + Self.hex("beta-token").uppercased()])
        #expect(auth.isConfigured)
        #expect(auth.check(authorization: "Bearer alpha-token") == .allowed)
        #expect(auth.check(authorization: "bearer  alpha-token ") == .allowed)
        #expect(auth.check(authorization: "Bearer beta-token") == .allowed)
        #expect(auth.check(authorization: "Bearer alpha-tokeN") == .invalid)
        #expect(auth.check(authorization: "Bearer " + Self.hex("beta-token")) == .invalid, "the digest itself is not a token")
        #expect(auth.check(authorization: "Bearer sha256:" + Self.hex("beta-token")) == .invalid)
        #expect(auth.check(authorization: "Bearer alpha-token extra") == .invalid)
        #expect(auth.check(authorization: "Bearer") == .invalid)
        #expect(auth.check(authorization: "Basic alpha-token") == .missing)
        #expect(auth.check(authorization: nil) == .missing)
        #expect(auth.check(authorization: "  ") == .missing)
        #expect(auth.check(authorization: "Bearer " + String(repeating: "a", count: 5000)) == .invalid)
    }

    @Test func noTokensRefuseEverything() {
        let auth = BearerAuthenticator(tokens: [])
        #expect(!auth.isConfigured)
        #expect(auth.check(authorization: "Bearer anything") == .invalid)
        #expect(auth.check(authorization: "Bearer ") == .invalid)
        #expect(BearerAuthenticator(tokens: [""]).check(authorization: "Bearer x") == .invalid)
    }

    @Test func expiresIsCappedAndValidated() throws {
        #expect(try Presigner.parseExpires(nil) == nil)
        #expect(try Presigner.parseExpires("60") == 60)
        #expect(try Presigner.parseExpires("604800") == 604_800)
        #expect(try Presigner.parseExpires("604801") == 604_800)
        #expect(try Presigner.parseExpires("999999999999") == 604_800)
        for bad in ["0", "-1", "", "1.5", "abc", " 5", "9999999999999"] {
            #expect(throws: LookupError.self, "\(bad)") { try Presigner.parseExpires(bad) }
        }
    }

    func presigner(pathStyle: Bool, ttl: Int = 3600) throws -> Presigner {
        var storage = Settings.Storage()
        storage.endpoint = "http://127.0.0.1:9000"
        storage.bucket = "my-bucket"
        storage.accessKeyID = "AKIDEXAMPLE"
        storage.secretAccessKey = "secret"
        storage.pathStyle = pathStyle
        storage.presignTTL = ttl
        return try Presigner.make(storage)
    }

    @Test func urlsArePathStyleOrVirtualHostedWithKeysEncodedByS3Rules() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000.7)
        let key = "p re/ü+x=y/0 a.png"
        let path = try presigner(pathStyle: true).sign(key: key, now: now)
        #expect(path.url.hasPrefix("http://127.0.0.1:9000/my-bucket/p%20re/%C3%BC%2Bx%3Dy/0%20a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&"))
        #expect(path.url.contains("X-Amz-Expires=3600&"))
        #expect(path.expiresAt == Date(timeIntervalSince1970: 1_800_003_600))
        let virtual = try presigner(pathStyle: false).sign(key: key, expires: 10, now: now)
        #expect(virtual.url.hasPrefix("http://my-bucket.127.0.0.1:9000/p%20re/%C3%BC%2Bx%3Dy/0%20a.png?"))
        #expect(virtual.url.contains("X-Amz-Expires=10&"))
        #expect(virtual.url.range(of: "X-Amz-Signature=[0-9a-f]{64}$", options: .regularExpression) != nil)
        let capped = try presigner(pathStyle: true, ttl: 604_800).sign(key: key, expires: 10_000_000, now: now)
        #expect(capped.url.contains("X-Amz-Expires=604800&"))
    }

    @Test func downloadNamesBecomeASafeContentDisposition() throws {
        #expect(Presigner.contentDisposition(filename: "cat.png") == "attachment; filename=\"cat.png\"; filename*=UTF-8''cat.png")
        #expect(
            Presigner.contentDisposition(filename: "a \"b\" ü.png")
                == "attachment; filename=\"a _b_ _.png\"; filename*=UTF-8''a%20%22b%22%20%C3%BC.png")
        let url = try presigner(pathStyle: true).sign(key: "k", downloadName: "x y.png").url
        #expect(url.contains("response-content-disposition=attachment%3B%20filename%3D%22x%20y.png%22"))
        for bad in ["", "a/b", "a\\b", "tab\there", String(repeating: "n", count: 256)] {
            #expect(throws: LookupError.self) { try Presigner.validateDownloadName(bad) }
        }
        #expect(try Presigner.validateDownloadName("ünï cødé.png") == "ünï cødé.png")
    }

    @Test func jsonWriterEscapesAndSeparates() throws {
        var json = JSONWriter()
        json.objectStart()
        json.field("s", "q\"b\\n\nt\tc\u{01}ü")
        json.field("n", nil as String?)
        json.field("i", Int64(-5))
        json.field("b", true)
        json.key("raw")
        json.raw(#"{"a": [1, 2]}"#)
        json.key("list")
        json.arrayStart()
        json.int(1)
        json.string("x")
        json.objectStart()
        json.objectEnd()
        json.arrayEnd()
        json.objectEnd()
        let text = String(decoding: json.bytes, as: UTF8.self)
        #expect(text == #"{"s":"q\"b\\n\nt\tc\u0001ü","n":null,"i":-5,"b":true,"raw":{"a": [1, 2]},"list":[1,"x",{}]}"#)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any])
        #expect(decoded["s"] as? String == "q\"b\\n\nt\tc\u{01}ü")
    }

    @Test func errorsMapToTheDocumentedStatuses() {
        #expect(LookupError(.invalidParameter, "").status == 400)
        #expect(LookupError(.predictionNotFound, "").status == 404)
        #expect(LookupError(.outputNotFound, "").status == 404)
        #expect(LookupError(.assetNotFound, "").status == 404)
        #expect(LookupError(.assetNotReady, "", retryAfter: 3).status == 409)
        #expect(LookupError(.notRetryable, "").status == 409)
        #expect(LookupError(.assetFailed, "").status == 410)
        #expect(LookupError(.assetExpired, "").status == 410)
        let response = LookupError(.assetNotReady, "later", retryAfter: 7).response
        #expect(response.headers.contains { $0.0 == "Retry-After" && $0.1 == "7" })
        #expect(Date(timeIntervalSince1970: 1_800_000_000.9).rfc3339() == "2027-01-15T08:00:00Z")
    }

    @Test func postgresTimestampTextBecomesISO8601WithMilliseconds() {
        #expect(LookupStore.isoTimestamp("2026-11-21 10:00:00.123456+00") == "2026-11-21T10:00:00.123Z")
        #expect(LookupStore.isoTimestamp("2026-11-21 10:00:00.5+00") == "2026-11-21T10:00:00.500Z")
        #expect(LookupStore.isoTimestamp("2026-11-21 10:00:00.999999+00") == "2026-11-21T10:00:00.999Z", "truncated like to_char MS")
        #expect(LookupStore.isoTimestamp("2026-11-21 23:59:59+00") == "2026-11-21T23:59:59.000Z")
        #expect(LookupStore.isoTimestamp("0099-01-02 03:04:05.06+00") == "0099-01-02T03:04:05.060Z")
        // Shapes a UTC session does not produce for real instants are passed through, never mangled.
        for text in ["infinity", "-infinity", "2026-11-21 10:00:00+01", "0044-03-15 12:00:00+00 BC", "12026-11-21 10:00:00+00", ""] {
            #expect(LookupStore.isoTimestamp(text) == text)
        }
        #expect(LookupStore.isoTimestamp(String?.none) == nil)
    }
}
