import Foundation
import Testing
import TestSupport
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
        let text = #"{"meta": {"a": [1, 2.5e3, true, false, null, {"b": "\"}"}]}, "artifacts": [{"base64": "AAEC", "seed": 0, "extra": [[]]}, {"finishReason": "ERROR"}], "id": null}"#
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
        #expect(StabilitySource.providerMessage(Array(repeating: UInt8(ascii: "x"), count: 5000), redacting: "k")!.count <= StabilitySource.maxMessageLength + 1)
        #expect(StabilitySource.providerMessage([], redacting: "k") == nil)
    }

    @Test func notReadyPollsWithoutCountingAndExpiresAtTheDeadline() {
        let policy = RetryPolicy()
        let now = Date()
        let notReady = ArchiveError(.notReady, "in progress", status: 202, retryAfter: 7)
        #expect(policy.decide(notReady, attempts: 100, deadline: now.addingTimeInterval(3600), now: now) == .retry(at: now.addingTimeInterval(7)))
        #expect(policy.decide(notReady, attempts: 1, deadline: now.addingTimeInterval(2), now: now) == .retry(at: now.addingTimeInterval(2)))
        if case .expire = policy.decide(notReady, attempts: 1, deadline: now.addingTimeInterval(-1), now: now) {} else {
            Issue.record("a generation still in progress after its deadline must expire")
        }
        // Stability's 429: not before its 60 s.
        let limited = ArchiveError(.sourceStatus, "Stability answered 429", status: 429, retryAfter: 60)
        guard case .retry(let at) = policy.decide(limited, attempts: 1, deadline: now.addingTimeInterval(3600), now: now, jitter: 1) else {
            Issue.record("429 must be retried"); return
        }
        #expect(at >= now.addingTimeInterval(60))
        // A lost inline result fails at once, with its reason.
        #expect(policy.decide(ArchiveError(.inlineLost, "gone"), attempts: 1, deadline: nil, now: now) == .fail(reason: "gone"))
    }

    @Test func pollDelayGrowsWithTheGenerationsAge() {
        func job(receivedSecondsAgo: TimeInterval, now: Date) -> ArchiveJob {
            ArchiveJob(assetID: 1, provider: "stability", predictionID: "p", outputIndex: 0, sourceURL: "http://x/v2beta/results/p",
                       deadline: now.addingTimeInterval(StabilityIntake.resultRetention - receivedSecondsAgo), attempts: 1,
                       claimToken: UUID(), spoolPath: nil, spoolSHA256: nil, spoolSize: nil, contentType: nil, sourceKind: .stabilityResult)
        }
        let now = Date()
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 1, now: now), now: now) == 3)
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 200, now: now), now: now) == 20)
        #expect(StabilitySource.pollDelay(job: job(receivedSecondsAgo: 5000, now: now), now: now) == 60)
        #expect(StabilitySource.retryAfter("5") == 5)
        #expect(StabilitySource.retryAfter("99999") == 600)
        #expect(StabilitySource.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == nil)
    }
}
