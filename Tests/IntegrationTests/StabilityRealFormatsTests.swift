import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Issue 12, Stability half, end to end: the real daemon, real PostgreSQL and SeaweedFS, the fake
/// Stability API answering with fixtures shaped like Stability's own answers.
@Suite("Stability: real answers, audio, several keys, poll cadence", .serialized)
struct StabilityRealFormatsTests {
    static let generationID = "9c2d6e41b3a7f05d8e16c4a92b7f3e05d1a8c6b49e27f0d35a1c8e6b72d94f03"
    static let audioID = "e4f1a7c29b3d5e60a8f7c1d24b6e9a3f05c7d8e1b2a4f6c9d0e3b5a7c9f1d2e4"

    /// The WAV inside `audio-answer.json`.
    static func fixtureWAV(_ rig: StabilityRig) throws -> [UInt8] {
        let text = try #require(try rig.fixtureJSON("audio-answer.json")["audio"] as? String)
        return Array(try #require(Data(base64Encoded: text)))
    }

    @Test func resultAnswersThe202BodyAndAudioAreArchived() throws {
        let rig = try StabilityRig()
        // The 202 body forwarded by an app is a reference; its poll answers the 202 fixture, then the
        // JSON answer fixture (`result`).
        try rig.fake.script(
            Self.generationID, "202,200", bodyFile: StabilityRig.fixturePath("results-answer.json"),
            inProgressFile: StabilityRig.fixturePath("results-in-progress.json"))
        // Audio: bytes as audio/mpeg from the audio endpoint; another generation answers the JSON fixture.
        try rig.fake.script(Self.audioID, "200", size: 6000, type: "audio/mpeg", finishReason: "SUCCESS", seed: 99, kind: "audio")
        let wavID = "wav-\(UUID().uuidString.lowercased())"
        try rig.fake.script(wavID, "200", kind: "audio", bodyFile: StabilityRig.fixturePath("audio-answer.json"))
        let daemon = try rig.startDaemon()

        var predictions: [String] = []
        for body in [
            try rig.fixture("results-answer.json"), try rig.fixture("results-in-progress.json"),
            try rig.fixture("audio-reference.json"), Array(#"{"id": "\#(wavID)", "kind": "audio", "prediction_id": "app-wav"}"#.utf8),
        ] {
            let answer = try rig.post(body, to: daemon)
            #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
            predictions.append(try #require(StabilityRig.json(answer)["prediction_id"] as? String))
        }
        let pixel = FakeProvider.sha256Hex(StabilityArchiveTests.onePixelPNG)
        #expect(predictions == [pixel, Self.generationID, Self.audioID, "app-wav"])
        try rig.harness.waitForAssets("stored", count: 4, timeout: .seconds(90))

        // A forwarded `result` answer: inline bytes, like `image`.
        let inline = try #require(try rig.assets(predictionID: pixel).first)
        try rig.expectStored(inline, equals: StabilityArchiveTests.onePixelPNG)
        #expect(inline.pointer == "/result")
        #expect(inline.sourceKind == "inline")
        #expect(inline.seed == 2_718_281_828)
        #expect(inline.key?.hasSuffix("/0.png") == true)

        // A polled JSON answer: decoded, never stored as JSON.
        let polled = try #require(try rig.assets(predictionID: Self.generationID).first)
        try rig.expectStored(polled, equals: StabilityArchiveTests.onePixelPNG)
        #expect(polled.contentType == "image/png")
        #expect(polled.finishReason == "SUCCESS")
        #expect(polled.seed == 2_718_281_828)
        #expect(try rig.fake.requests(Self.generationID).map(\.status) == [202, 200])

        // Audio from the audio endpoint, named after the answer's content type.
        let audio = try #require(try rig.assets(predictionID: Self.audioID).first)
        try rig.expectStored(audio, equals: FakeStability.bytes(Self.audioID, size: 6000))
        #expect(audio.contentType == "audio/mpeg")
        #expect(audio.key?.hasSuffix("/0.mp3") == true, "\(audio.key ?? "no key")")
        #expect(audio.seed == 99)
        let audioRequests = try rig.fake.requests(Self.audioID)
        #expect(audioRequests.map(\.path) == ["/v2beta/audio/results/"])
        #expect(audioRequests.map(\.accept) == ["audio/*"])
        let wav = try #require(try rig.assets(predictionID: "app-wav").first)
        try rig.expectStored(wav, equals: try Self.fixtureWAV(rig))
        #expect(wav.key?.hasSuffix("/0.wav") == true, "\(wav.key ?? "no key")")
        #expect(wav.seed == 1337)
        #expect(
            try rig.harness.scalar("SELECT source_url FROM assets WHERE prediction_id = $1", [Self.audioID], as: String.self)
                == "\(rig.fake.baseURL)/v2beta/audio/results/\(Self.audioID)")
        try daemon.stop()
    }

    @Test func aResultIsAskedForWithEveryKeyAndExpiresOnlyWhenEveryKeySays404AfterTheDeadline() throws {
        let rig = try StabilityRig(keyCount: 3)
        let owned = "owned-\(UUID().uuidString.lowercased())"
        let gone = "gone-\(UUID().uuidString.lowercased())"
        try rig.fake.script(owned, "200", size: 4000, owner: 2)
        let daemon = try rig.startDaemon()
        for id in [owned, gone] {
            #expect(try rig.post(Array(#"{"id": "\#(id)"}"#.utf8), to: daemon).status == 200)
        }
        try rig.harness.waitForAssets("stored", count: 1, timeout: .seconds(60))
        let stored = try #require(try rig.assets(predictionID: owned).first)
        try rig.expectStored(stored, equals: FakeStability.bytes(owned, size: 4000))
        #expect(try rig.fake.requests(owned).map(\.key) == [0, 1, 2])

        // Every key says 404 before the deadline: asked again later, not expired.
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "every key asked") { try rig.fake.requests(gone).count >= 3 }
        #expect(try rig.fake.requests(gone).prefix(3).map(\.key) == [0, 1, 2])
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(50), "the 404s recorded") {
            try rig.harness.scalar("SELECT last_error IS NOT NULL FROM assets WHERE prediction_id = $1", [gone], as: Bool.self)
        }
        #expect(try rig.assets(predictionID: gone).first?.state == "pending")
        let lastError = try rig.harness.scalar("SELECT last_error FROM assets WHERE prediction_id = $1", [gone], as: String.self)
        #expect(lastError.contains("404 to each of the 3 API keys"), "\(lastError)")
        // Past the deadline the next poll asks every key again (not before 10 s have passed), and only then
        // is the result expired.
        let connection = try rig.harness.connection()
        try connection.execute("UPDATE assets SET deadline = now() - interval '1 second', next_attempt_at = now() WHERE prediction_id = $1", [gone])
        connection.close()
        try rig.harness.waitForAssets("expired", count: 1, timeout: .seconds(60))
        let expired = try #require(try rig.assets(predictionID: gone).first)
        #expect(expired.failureReason?.contains("404") == true, "\(expired.failureReason ?? "no reason")")
        let asked = try rig.fake.requests(gone)
        #expect(asked.map(\.key) == [0, 1, 2, 0, 1, 2], "the expiring poll asked every key too")
        #expect(asked[3].at - asked[2].at >= StabilitySource.minimumPollInterval)
        try daemon.stop()
        for key in rig.fake.apiKeys {
            #expect(!daemon.log.contains(key), "an API key reached the log")
            #expect(!lastError.contains(key) && expired.failureReason?.contains(key) != true)
        }
    }

    @Test func theFirstPollWaitsTenSecondsAndPollsAreTenSecondsApart() throws {
        let rig = try StabilityRig()
        let id = "slow-\(UUID().uuidString.lowercased())"
        // Stability may say "come back in 1 s"; it is still not asked sooner than every 10 s.
        try rig.fake.script(id, "202,202,200", size: 1000, retryAfter: 1)
        let daemon = try rig.startDaemon()
        let posted = Date().timeIntervalSince1970
        #expect(try rig.post(Array(#"{"id": "\#(id)"}"#.utf8), to: daemon).status == 200)
        try rig.harness.waitForAssets("stored", count: 1, timeout: .seconds(90))
        let requests = try rig.fake.requests(id)
        #expect(requests.map(\.status) == [202, 202, 200])
        let first = try #require(requests.first)
        #expect(first.wall - posted >= StabilitySource.minimumPollInterval, "first poll \(first.wall - posted) s after the reference")
        for (earlier, later) in zip(requests, requests.dropFirst()) {
            #expect(later.at - earlier.at >= StabilitySource.minimumPollInterval, "polls \(later.at - earlier.at) s apart")
        }
        #expect(try rig.harness.scalar("SELECT attempts FROM assets WHERE prediction_id = $1", [id], as: Int.self) == 1)
        try daemon.stop()
    }
}
