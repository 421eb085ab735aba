import Crypto
import Foundation
import Primitives
import Testing

@testable import Afterimage

@Suite("The demo's Replicate prediction")
struct DemoPredictionTests {
    @Test("the PNG is a real 48x48 PNG and its SHA-256 is what the demo compares against")
    func png() {
        let png = DemoPrediction.png
        #expect(png.count == 455)
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // IHDR: width and height, big-endian, right after the chunk header.
        #expect(Array(png[16..<24]) == [0, 0, 0, 48, 0, 0, 0, 48])
        #expect(DemoPrediction.pngSHA256 == Hex.encode(SHA256.hash(data: png)))
    }

    @Test("the body is a completed prediction shaped like Replicate's, with the PNG as a data: output")
    func body() throws {
        let now = Date(timeIntervalSince1970: 1_780_000_000.123456789)
        let prediction = DemoPrediction(now: now)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(prediction.body)) as? [String: Any])
        #expect(object["id"] as? String == prediction.id)
        #expect(prediction.id.count == 26 && prediction.id.allSatisfy { $0.isLowercase || $0.isNumber })
        #expect(object["status"] as? String == "succeeded")
        #expect(object["version"] as? String == "hidden")
        let output = try #require(object["output"] as? [String])
        #expect(output == ["data:image/png;base64," + Data(DemoPrediction.png).base64EncodedString()])
        let created = try #require(object["created_at"] as? String)
        let completed = try #require(object["completed_at"] as? String)
        // Millisecond created_at, nanosecond completed_at, as real webhooks mix them.
        #expect(created.count == "2026-06-12T09:41:15.127Z".count)
        #expect(completed.count == "2026-06-12T09:41:21.904733154Z".count)
        let parsedCompleted = try #require(Date(rfc3339: completed))
        #expect(abs(parsedCompleted.timeIntervalSince1970 - now.timeIntervalSince1970) < 0.001)
        #expect(try #require(Date(rfc3339: created)) < parsedCompleted)
        // Two demos are two predictions.
        #expect(DemoPrediction(now: now).id != prediction.id)
    }

    @Test("the daemon's own parser reads it as a terminal prediction with one data: output to archive")
    func parsedByIntake() throws {
        let prediction = DemoPrediction()
        let parsed = try ReplicatePrediction.parse(prediction.body)
        #expect(parsed.id == prediction.id)
        #expect(parsed.isTerminal)
        #expect(parsed.outputs.map(\.pointer) == ["/0"])
        #expect(parsed.outputs.first?.url == "data:image/png;base64")
        #expect(parsed.model == "afterimage/demo")
    }

    @Test("its headers carry a Standard Webhooks signature the daemon's verifier accepts")
    func signature() throws {
        let secret = "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let prediction = DemoPrediction()
        let now = Date()
        let headers = Dictionary(uniqueKeysWithValues: prediction.headers(secret: secret, now: now))
        try StandardWebhooksVerifier(secrets: [secret]).verify(
            id: headers["webhook-id"], timestamp: headers["webhook-timestamp"], signature: headers["webhook-signature"],
            body: prediction.body, now: now)
        #expect(throws: StandardWebhooksVerifier.Failure.self) {
            try StandardWebhooksVerifier(secrets: ["whsec_" + Data(repeating: 7, count: 32).base64EncodedString()]).verify(
                id: headers["webhook-id"], timestamp: headers["webhook-timestamp"], signature: headers["webhook-signature"],
                body: prediction.body, now: now)
        }
    }

    @Test("the daemon's address: loopback when it listens everywhere, IPv6 bracketed")
    func baseURL() {
        var http = Settings.HTTP()
        #expect(LocalDemo.baseURL(for: http) == "http://127.0.0.1:8080")
        http.host = "0.0.0.0"
        http.port = 9000
        #expect(LocalDemo.baseURL(for: http) == "http://127.0.0.1:9000")
        http.host = "::"
        #expect(LocalDemo.baseURL(for: http) == "http://[::1]:9000")
        http.host = "fd00::5"
        #expect(LocalDemo.baseURL(for: http) == "http://[fd00::5]:9000")
    }
}
