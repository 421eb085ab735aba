import Foundation
import TestSupport
import Testing

@testable import Afterimage

@Suite("Stability bodies: forms, fields and inline bytes")
struct StabilityBodyTests {
    func parse(_ text: String) throws -> StabilityBody {
        try Array(text.utf8).withUnsafeBufferPointer { try StabilityBody.parse($0) }
    }

    /// The decoded bytes of one artifact, through the same run-by-run path the intake uses.
    func decoded(_ text: String, _ artifact: StabilityBody.Artifact) throws -> [UInt8] {
        var out: [UInt8] = []
        let decoder = Base64StreamDecoder { out.append(contentsOf: $0) }
        try Array(text.utf8).withUnsafeBufferPointer { bytes in
            try JSONByteScanner(bytes).forEachUnescapedRun(artifact.base64) { try decoder.decode($0) }
        }
        try decoder.finish()
        return out
    }

    func fixture(_ name: String) throws -> String {
        try String(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent("stability/\(name)"), encoding: .utf8)
    }

    static let onePixelPNG = Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")!

    @Test func v1ArtifactsFixture() throws {
        let text = try fixture("v1-artifacts.json")
        let body = try parse(text)
        #expect(body.artifacts.count == 1)
        let artifact = try #require(body.artifacts.first)
        #expect(artifact.pointer == "/artifacts/0")
        #expect(artifact.seed == 1_050_625_087)
        #expect(artifact.finishReason == "SUCCESS")
        #expect(artifact.kind == nil)
        #expect(try decoded(text, artifact) == Array(Self.onePixelPNG))
        #expect(!body.isReference)
    }

    @Test func v2betaImageFixture() throws {
        let text = try fixture("v2beta-image.json")
        let body = try parse(text)
        let artifact = try #require(body.artifacts.first)
        #expect(body.artifacts.count == 1)
        #expect(artifact.pointer == "/image")
        #expect(artifact.kind == "image")
        #expect(artifact.seed == 343_940_597)
        #expect(artifact.finishReason == "SUCCESS")
        #expect(try decoded(text, artifact) == Array(Self.onePixelPNG))
    }

    @Test func asyncReferenceFixture() throws {
        let body = try parse(try fixture("async-reference.json"))
        #expect(body.isReference)
        #expect(body.generationID == "a6dc6c6e20acda010fe14d71f180658f2896ed9b4ec25aa99a6ff06c796987c4")
        #expect(body.predictionID == nil)
    }

    @Test func escapedSlashesAndLineBreaksInsideTheBase64() throws {
        let bytes: [UInt8] = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        let encoded = Data(bytes).base64EncodedString(options: .lineLength64Characters)
            .replacingOccurrences(of: "/", with: "\\/").replacingOccurrences(of: "\r\n", with: "\\r\\n")
            .replacingOccurrences(of: "+", with: "\\u002B")
        let text = #"{"video": "\#(encoded)", "finish_reason": "CONTENT_FILTERED", "seed": "42", "prediction_id": "app-7.x_y"}"#
        let body = try parse(text)
        let artifact = try #require(body.artifacts.first)
        #expect(artifact.base64.hasEscapes)
        #expect(try decoded(text, artifact) == bytes)
        #expect(artifact.finishReason == "CONTENT_FILTERED")
        #expect(artifact.seed == 42)
        #expect(body.predictionID == "app-7.x_y")
    }

    @Test func unknownFieldsAndNestedValuesAreSkipped() throws {
        let text =
            #"{"meta": {"a": [1, 2.5e3, true, false, null, {"b": "\"}"}]}, "artifacts": [{"base64": "AAEC", "seed": 0, "extra": [[]]}, {"finishReason": "ERROR"}], "id": null}"#
        let body = try parse(text)
        #expect(body.artifacts.map(\.pointer) == ["/artifacts/0"])  // the ERROR artifact has no bytes to keep
        #expect(try decoded(text, body.artifacts[0]) == [0, 1, 2])
        #expect(body.artifacts[0].finishReason == nil)
    }

    @Test(arguments: [
        "", "[]", "{", #"{"image": 5}"#, #"{"artifacts": {}}"#, #"{"nothing": 1}"#, #"{"id": "../etc"}"#,
        #"{"image": "AAAA", "artifacts": [{"base64": "AAAA"}]}"#, #"{"image": "AAAA"} x"#,
        #"{"image": "AAAA", "prediction_id": "a/b"}"#, #"{"image": "AA"#, #"{"seed": 01e, "image": "AAAA"}"#,
        String(repeating: #"{"a":"#, count: 40) + "1" + String(repeating: "}", count: 40),
    ])
    func refusesWhatIsNotAStabilityResult(_ text: String) {
        #expect(throws: StabilityBody.ParseError.self) { try parse(text) }
    }

    @Test func sniffsMediaTypes() {
        #expect(MediaSniffer.contentType(head: [0xFF, 0xD8, 0xFF, 0xE0], kind: nil) == "image/jpeg")
        #expect(MediaSniffer.contentType(head: Array("RIFF\0\0\0\0WEBPVP8 ".utf8), kind: "image") == "image/webp")
        #expect(MediaSniffer.contentType(head: Array("\0\0\0\u{18}ftypmp42".utf8), kind: "video") == "video/mp4")
        #expect(MediaSniffer.contentType(head: Array("RIFF\0\0\0\0WAVEfmt ".utf8), kind: "audio") == "audio/wav")
        #expect(MediaSniffer.contentType(head: [1, 2, 3], kind: "video") == "application/octet-stream")
    }

    @Test func providerMessagesAreShortAndNeverCarryTheKey() {
        let body = Array(#"{"id": "x", "name": "unauthorized", "errors": ["bad key sk-secret-123\nline"]}"#.utf8)
        let message = StabilitySource.providerMessage(body, redacting: "sk-secret-123")
        #expect(message == "unauthorized: bad key [redacted] line")
        #expect(
            StabilitySource.providerMessage(Array(repeating: UInt8(ascii: "x"), count: 5000), redacting: "k")!.count <= StabilitySource
                .maxMessageLength + 1)
        #expect(StabilitySource.providerMessage([], redacting: "k") == nil)
        // With several keys, none of them.
        let two = Array(#"{"name": "unauthorized", "errors": ["sk-a1 and sk-b2"]}"#.utf8)
        #expect(StabilitySource.providerMessage(two, redacting: ["sk-a1", "sk-b2"]) == "unauthorized: [redacted] and [redacted]")
    }

    @Test func notReadyPollsWithoutCountingAndExpiresAtTheDeadline() {
        let policy = RetryPolicy()
        let now = Date()
        let notReady = ArchiveError(.notReady, "in progress", status: 202, retryAfter: 7)
        #expect(policy.decide(notReady, attempts: 100, deadline: now.addingTimeInterval(3600), now: now) == .retry(at: now.addingTimeInterval(7)))
        #expect(policy.decide(notReady, attempts: 1, deadline: now.addingTimeInterval(2), now: now) == .retry(at: now.addingTimeInterval(2)))
        if case .expire = policy.decide(notReady, attempts: 1, deadline: now.addingTimeInterval(-1), now: now) {
        } else {
            Issue.record("a generation still in progress after its deadline must expire")
        }
        // Our own wait between polls is no answer from the source: it never expires, nor is it pulled in.
        let waiting = ArchiveError(.notReady, "polled less than 10 s ago", retryAfter: 6)
        #expect(policy.decide(waiting, attempts: 1, deadline: now.addingTimeInterval(-1), now: now) == .retry(at: now.addingTimeInterval(6)))
        #expect(policy.decide(waiting, attempts: 1, deadline: now.addingTimeInterval(2), now: now) == .retry(at: now.addingTimeInterval(6)))
        // Stability's 429: not before its 60 s.
        let limited = ArchiveError(.sourceStatus, "Stability answered 429", status: 429, retryAfter: 60)
        guard case .retry(let at) = policy.decide(limited, attempts: 1, deadline: now.addingTimeInterval(3600), now: now, jitter: 1) else {
            Issue.record("429 must be retried")
            return
        }
        #expect(at >= now.addingTimeInterval(60))
        // A lost inline result fails at once, with its reason.
        #expect(policy.decide(ArchiveError(.inlineLost, "gone"), attempts: 1, deadline: nil, now: now) == .fail(reason: "gone"))
    }

    @Test func pollDelayGrowsWithTheGenerationsAge() {
        func job(receivedSecondsAgo: TimeInterval, now: Date) -> ArchiveJob {
            ArchiveJob(
                assetID: 1, provider: "stability", predictionID: "p", outputIndex: 0, sourceURL: "http://x/v2beta/results/p",
                deadline: now.addingTimeInterval(StabilityIntake.resultRetention - receivedSecondsAgo), attempts: 1,
                claimToken: UUID(), spoolPath: nil, spoolSHA256: nil, spoolSize: nil, contentType: nil, sourceKind: .stabilityResult)
        }
        let now = Date()
        // Never sooner than Stability's 10 s between polls.
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 1, now: now), now: now) == 10)
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 200, now: now), now: now) == 20)
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 5000, now: now), now: now) == 60)
        #expect(StabilitySource.retryAfter("5") == 5)
        #expect(StabilitySource.retryAfter("99999") == 600)
        #expect(StabilitySource.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == nil)
    }

    // MARK: - Issue 12: the real answers of the results endpoints

    @Test func theJSONAnswerOfTheResultsEndpointCarriesTheBytesInResult() throws {
        let text = try fixture("results-answer.json")
        let body = try parse(text)
        let artifact = try #require(body.artifacts.first)
        #expect(body.artifacts.count == 1)
        #expect(artifact.pointer == "/result")
        #expect(artifact.kind == "image")
        #expect(artifact.seed == 2_718_281_828)
        #expect(artifact.finishReason == "SUCCESS")
        #expect(try decoded(text, artifact) == Array(Self.onePixelPNG))
        #expect(!body.isReference)
    }

    @Test func the202BodyIsAReferenceToItsGeneration() throws {
        let body = try parse(try fixture("results-in-progress.json"))
        #expect(body.isReference)
        #expect(body.generationID == "9c2d6e41b3a7f05d8e16c4a92b7f3e05d1a8c6b49e27f0d35a1c8e6b72d94f03")
        #expect(body.kind == .image)
    }

    @Test func audioReferencesAndAnswers() throws {
        let reference = try parse(try fixture("audio-reference.json"))
        #expect(reference.isReference)
        #expect(reference.kind == .audio)
        #expect(reference.kind.resultsPath == "/v2beta/audio/results/")

        let text = try fixture("audio-answer.json")
        let answer = try parse(text)
        let artifact = try #require(answer.artifacts.first)
        #expect(artifact.pointer == "/audio")
        #expect(artifact.seed == 1337)
        let bytes = try decoded(text, artifact)
        #expect(MediaSniffer.contentType(head: Array(bytes.prefix(16)), kind: artifact.kind) == "audio/wav")

        // A `result` takes the body's kind: an mp4 container of audio is audio/mp4, not a video.
        let m4a = Data("\0\0\0\u{18}ftypM4A ".utf8).base64EncodedString()
        let audioResult = try parse(#"{"result": "\#(m4a)", "kind": "audio"}"#)
        #expect(audioResult.artifacts.first?.kind == "audio")
        #expect(try parse(#"{"id": "abc", "kind": null}"#).kind == .image)
    }

    @Test(arguments: [#"{"id": "abc", "kind": "video"}"#, #"{"id": "abc", "kind": 1}"#, #"{"result": "AAAA", "kind": "AUDIO"}"#])
    func anUnknownKindIsRefused(_ text: String) {
        #expect(throws: StabilityBody.ParseError.self) { try parse(text) }
    }

    @Test func theKindOfAResultsURLAndWhatAPollAccepts() {
        #expect(StabilityGenerationKind(resultsURL: "https://api.stability.ai/v2beta/audio/results/abc") == .audio)
        #expect(StabilityGenerationKind(resultsURL: "https://api.stability.ai/v2beta/results/abc") == .image)
        #expect(StabilityGenerationKind.audio.accept == "audio/*")
        #expect(StabilityGenerationKind.image.accept == "*/*")
    }

    @Test func aGenerationIsNotPolledAgainWithinTenSecondsAndItsKeyIsAskedFirst() {
        let memory = PollMemory()
        let url = "https://api.stability.ai/v2beta/results/abc"
        let now = Date()
        #expect(memory.wait(before: url, now: now) == nil)
        memory.polled(url, now: now)
        #expect(memory.wait(before: url, now: now.addingTimeInterval(4)) == 6)
        #expect(memory.wait(before: url, now: now.addingTimeInterval(10)) == nil)
        // A clock that went backwards never makes the wait longer than the interval.
        #expect(memory.wait(before: url, now: now.addingTimeInterval(-100)) == 10)
        #expect(memory.wait(before: "https://api.stability.ai/v2beta/results/other", now: now) == nil)

        #expect(memory.order(["k1", "k2", "k3"], for: url) == ["k1", "k2", "k3"])
        memory.remember(owner: "k3", of: url)
        #expect(memory.order(["k1", "k2", "k3"], for: url) == ["k3", "k1", "k2"])
        // A key removed by a reload is simply not asked.
        #expect(memory.order(["k1", "k2"], for: url) == ["k1", "k2"])
    }

    @Test func thePollMemoryStaysBounded() {
        let memory = PollMemory()
        let start = Date()
        for index in 0..<(PollMemory.capacity + 5) {
            memory.polled("u\(index)", now: start.addingTimeInterval(Double(index) / 1_000_000))
        }
        // Every entry was still inside its interval when the memory filled, so it was emptied rather
        // than grown: the first is forgotten, the last is remembered.
        #expect(memory.wait(before: "u0", now: start.addingTimeInterval(1)) == nil)
        #expect(memory.wait(before: "u\(PollMemory.capacity + 4)", now: start.addingTimeInterval(1)) != nil)
    }

    @Test func everyKeyRefusingIsOneAnswer() {
        let one = StabilitySource.everyKeyRefused([(404, "not_found: Generation not found or expired")])
        #expect(one.status == 404)
        #expect(one.message == "Stability answered 404: not_found: Generation not found or expired")
        let three = StabilitySource.everyKeyRefused([(404, "a"), (404, "b"), (404, "c")])
        #expect(three.status == 404)
        #expect(three.message == "Stability answered 404 to each of the 3 API keys: a")
        let mixed = StabilitySource.everyKeyRefused([(401, "unauthorized"), (404, "not_found")])
        #expect(mixed.status == 404)
        #expect(mixed.message == "Stability answered 404 or 401 to each of the 2 API keys (401 to 1): not_found")
        #expect(StabilitySource.everyKeyRefused([(401, nil), (401, nil)]).status == 401)
        #expect(StabilitySource.distinct(["a", "", "b", "a"]) == ["a", "b"])
        #expect(StabilitySource.isJSON("application/json; charset=utf-8"))
        #expect(!StabilitySource.isJSON("image/png"))
        #expect(!StabilitySource.isJSON(nil))
    }
}
