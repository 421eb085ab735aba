import Foundation
import TestSupport
import Testing

@testable import Afterimage

@Suite("Standard Webhooks signatures")
struct StandardWebhooksTests {
    /// The vectors spell their keys as JSON does (`webhook_id`); the properties are Swift's camel case.
    static var snakeCaseDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    struct Vector: Decodable {
        let secret: String
        let webhookId: String
        let webhookTimestamp: Int64
        let payload: String
        let expectedSignature: String
    }

    func vector() throws -> Vector {
        let url = TestEnvironment.fixturesDirectory.appendingPathComponent("standard-webhooks-vector.json")
        return try Self.snakeCaseDecoder.decode(Vector.self, from: Data(contentsOf: url))
    }

    @Test func signingVector() throws {
        let v = try vector()
        #expect(
            StandardWebhooksVerifier.sign(secret: v.secret, id: v.webhookId, timestamp: v.webhookTimestamp, body: Array(v.payload.utf8))
                == v.expectedSignature)
        let verifier = StandardWebhooksVerifier(secrets: [v.secret])
        let at = Date(timeIntervalSince1970: TimeInterval(v.webhookTimestamp))
        try verifier.verify(
            id: v.webhookId, timestamp: String(v.webhookTimestamp), signature: v.expectedSignature, body: Array(v.payload.utf8), now: at)
    }

    @Test func anyEntryAndAnySecretMayMatch() throws {
        let v = try vector()
        let other = "whsec_" + Data("another key".utf8).base64EncodedString()
        let at = Date(timeIntervalSince1970: TimeInterval(v.webhookTimestamp))
        let header = "v1,Zm9vYmFy v2,whatever \(v.expectedSignature)"
        try StandardWebhooksVerifier(secrets: [other, v.secret]).verify(
            id: v.webhookId, timestamp: String(v.webhookTimestamp), signature: header, body: Array(v.payload.utf8), now: at)
    }

    @Test func refusals() throws {
        let v = try vector()
        let verifier = StandardWebhooksVerifier(secrets: [v.secret])
        let body = Array(v.payload.utf8)
        let ts = String(v.webhookTimestamp)
        let at = Date(timeIntervalSince1970: TimeInterval(v.webhookTimestamp))
        func code(_ id: String?, _ t: String?, _ sig: String?, _ b: [UInt8], _ now: Date) -> StandardWebhooksVerifier.Failure.Code? {
            do {
                try verifier.verify(id: id, timestamp: t, signature: sig, body: b, now: now)
                return nil
            } catch { return error.code }
        }
        #expect(code(v.webhookId, ts, v.expectedSignature, body + [0x20], at) == .invalid)  // tampered body
        #expect(code("msg_other", ts, v.expectedSignature, body, at) == .invalid)  // other id
        #expect(code(v.webhookId, ts, v.expectedSignature, body, at.addingTimeInterval(301)) == .staleTimestamp)
        #expect(code(v.webhookId, ts, v.expectedSignature, body, at.addingTimeInterval(-301)) == .staleTimestamp)
        #expect(code(v.webhookId, ts, v.expectedSignature, body, at.addingTimeInterval(299)) == nil)
        #expect(code(nil, ts, v.expectedSignature, body, at) == .missingHeaders)
        #expect(code(v.webhookId, ts, nil, body, at) == .missingHeaders)
        #expect(code(v.webhookId, "soon", v.expectedSignature, body, at) == .invalid)
        let wrong = StandardWebhooksVerifier(secrets: ["whsec_" + Data("wrong".utf8).base64EncodedString()])
        #expect(throws: StandardWebhooksVerifier.Failure.self) {
            try wrong.verify(id: v.webhookId, timestamp: ts, signature: v.expectedSignature, body: body, now: at)
        }
        #expect(throws: StandardWebhooksVerifier.Failure.self) {
            try StandardWebhooksVerifier(secrets: []).verify(id: v.webhookId, timestamp: ts, signature: v.expectedSignature, body: body, now: at)
        }
    }

    @Test func constantTimeComparison() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
    }
}

@Suite("Replicate predictions and output URLs")
struct ReplicatePredictionTests {
    func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent("replicate/\(name)")))
    }

    @Test func fixturesParseAndYieldTheirURLs() throws {
        let expectations: [(String, String, [String])] = [
            ("succeeded-list.json", "succeeded", ["/0", "/1"]),
            ("succeeded-string.json", "succeeded", [""]),
            ("succeeded-nested.json", "succeeded", ["/image", "/masks/0", "/masks/1"]),
            ("succeeded-text.json", "succeeded", []),
            ("failed.json", "failed", []),
            ("starting.json", "starting", []),
            ("data-removed.json", "succeeded", []),
        ]
        for (name, status, pointers) in expectations {
            let prediction = try ReplicatePrediction.parse(try fixture(name))
            #expect(prediction.status == status, "\(name)")
            let output = try prediction.outputJSON.map { try JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) }
            #expect(OutputURLWalker.urls(in: output).map(\.pointer) == pointers, "\(name)")
            // What intake archives when this event creates the prediction: the same URLs, found while parsing.
            #expect(prediction.outputs == OutputURLWalker.urls(in: output), "\(name)")
        }
        let nested = try ReplicatePrediction.parse(try fixture("succeeded-nested.json"))
        #expect(nested.completedAt == Date(rfc3339: "2026-11-20T12:00:09.900Z"))
        #expect(nested.isTerminal)
        #expect(try ReplicatePrediction.parse(try fixture("data-removed.json")).dataRemoved)
    }

    @Test func notAPrediction() {
        for body in [
            "[]", "{}", "{\"id\": \"x\", \"status\": \"exploded\"}", "not json", "{\"id\": 5, \"status\": \"starting\"}",
            "{\"id\": \"x\", \"status\": \"succeeded\", \"completed_at\": \"yesterday\"}",
        ] {
            #expect(throws: ReplicatePrediction.ParseError.self, "\(body)") { try ReplicatePrediction.parse(Array(body.utf8)) }
        }
    }

    @Test func walkerEscapesPointersAndSkipsNonURLs() {
        let output: [String: Any] = [
            "a/b": "https://x.example/1",
            "t~": [
                "http://y.example/2", "https://", "ftp://z/3", "data:image/png;base64,AAA",
                "data: not one", "data:",
            ], "n": 3,
        ]
        #expect(
            OutputURLWalker.urls(in: output) == [
                .init(pointer: "/a~1b", url: "https://x.example/1"),
                .init(pointer: "/t~0/0", url: "http://y.example/2"),
                .init(pointer: "/t~0/3", url: "data:image/png;base64"),
            ])
    }

    /// The byte-wise check for ASCII strings must answer as the Character rules (kept for other strings) do.
    @Test func fetchableURLsByteWiseAsByCharacters() {
        func characterRule(_ string: String) -> Bool {
            let lower = string.prefix(8).lowercased()
            guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else { return false }
            let rest = string.drop(while: { $0 != ":" }).dropFirst(3)
            return !rest.isEmpty && !rest.hasPrefix("/") && !string.contains(where: { $0.isWhitespace })
                && !string.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        }
        let cases = [
            "https://x.example/a.png", "HTTP://X", "Https://h", "http://", "https://", "https:///path", "http:/x",
            "https://a b", "https://a\tb", "https://a\r\n", "http://a\u{0B}", "https://a\u{1C}", "ftp://x", "httpsx://y",
            "http", "", " https://x", "https://x\u{A0}y", "https://x\u{2003}", "https://é.example", "https://\u{301}x",
            "HTTPS://ÉXAMPLE", "http://x\u{85}", "data:image/png;base64,AAA", "https://x/" + String(repeating: "a", count: 300),
            "https://x/a\u{0}b", "https://x/\u{7F}", "https://x/\u{1}",
        ]
        for string in cases {
            #expect(OutputURLWalker.isFetchableURL(string) == characterRule(string), "\(string.debugDescription)")
        }
        #expect(OutputURLWalker.isFetchableURL("https://x.example/a.png"))
        #expect(!OutputURLWalker.isFetchableURL("https://a b"))
        // A string bridged from NSString may not be contiguous UTF-8.
        #expect(OutputURLWalker.isFetchableURL(NSString(string: "https://bridged.example/1") as String))
    }

    @Test func timestamps() {
        let base = Date(rfc3339: "2026-11-20T12:00:00Z")!
        #expect(Date(rfc3339: "2026-11-20T12:00:00.5Z") == base.addingTimeInterval(0.5))
        #expect(abs(Date(rfc3339: "2026-11-20T12:00:00.581613Z")!.timeIntervalSince(base) - 0.581613) < 1e-6)
        #expect(Date(rfc3339: "2026-11-20T14:00:00+02:00") == base)
        #expect(Date(rfc3339: "2026-11-20T12:00:00") == nil)
        #expect(Date(rfc3339: "2026-13-20T12:00:00Z") == nil)
        #expect(Date(rfc3339: "yesterday") == nil)
    }
}
