import Foundation
import TestSupport
import Testing

@testable import Afterimage

/// What real Replicate webhooks carry (issue 12): the parse of real-shaped bodies, data: outputs, NULs,
/// safe ids. The end-to-end side is in IntegrationTests/ReplicateRealFormatsTests.
@Suite("Replicate real formats: parsing")
struct ReplicateRealFormatTests {
    func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent("replicate/\(name)")))
    }

    /// Mixed timestamp precision (ms created_at, ns started_at/completed_at), `version: "hidden"`, `source`,
    /// `deadline`, `deployment`, every `urls` entry and `webhook_events_filter`: parsed, the kept ones kept.
    @Test func realShapedBodiesParse() throws {
        let real = try ReplicatePrediction.parse(try fixture("real-shaped-succeeded.json"))
        #expect(real.id == "gm3qorzdhgbfurvjtvhg6dckhu")
        #expect(real.status == "succeeded")
        #expect(real.version == "hidden")
        #expect(real.source == "api")
        #expect(real.deployment == nil && real.deadline == nil)
        let created = try #require(real.createdAt)
        let started = try #require(real.startedAt)
        let completed = try #require(real.completedAt)
        #expect(created == Date(rfc3339: "2026-06-12T09:41:15.127Z"))
        #expect(abs(started.timeIntervalSince(created) - 0.009427877) < 1e-5)
        #expect(abs(completed.timeIntervalSince(started) - 6.768305277) < 1e-5)
        #expect(real.outputs.map(\.url) == ["https://replicate.delivery/xezq/Ap5zAUz9bKxq0MNF2wTfe3LqH7rvYcJk/tmp5v_v9dtm.png"])
        let metricsText = try #require(real.metricsJSON)
        let metrics = try #require(try JSONSerialization.jsonObject(with: Data(metricsText.utf8)) as? [String: Any])
        #expect(metrics["total_time"] as? Double == 6.777)

        let aborted = try ReplicatePrediction.parse(try fixture("real-shaped-aborted.json"))
        #expect(aborted.status == "aborted")
        #expect(aborted.isTerminal)
        #expect(aborted.outputs.isEmpty)
        #expect(aborted.startedAt == nil)
        #expect(aborted.deadline == Date(rfc3339: "2026-06-12T10:03:44.561Z"))
        #expect(aborted.deployment == "acme/flux-schnell-prod")

        let deployed = try ReplicatePrediction.parse(try fixture("real-shaped-deployment-succeeded.json"))
        #expect(deployed.deployment == "acme/mug-shots")
        #expect(deployed.outputs.map(\.pointer) == ["/0", "/1"])
        #expect(deployed.createdAt == Date(rfc3339: "2026-06-12T12:15:30.080Z"))
    }

    /// Data: outputs are outputs, numbered with the URLs in walk order; the kept output has their headers only.
    @Test func dataOutputsAreFoundAndElided() throws {
        let sync = try ReplicatePrediction.parse(try fixture("real-shaped-sync-data-uri.json"))
        #expect(
            sync.outputs == [
                .init(pointer: "/0", url: "data:image/webp;base64"),
                .init(pointer: "/1", url: "data:application/octet-stream;base64"),
            ])
        #expect(sync.outputs.allSatisfy { $0.isData && $0.dataSpan != nil })
        let kept = try #require(sync.outputJSON)
        #expect(!kept.contains("UklGR") && !kept.contains("iVBOR"))
        let stored = try #require(try JSONSerialization.jsonObject(with: Data(kept.utf8)) as? [String])
        #expect(stored == ["data:image/webp;base64,", "data:application/octet-stream;base64,"])
        // The stored copy walks to the same outputs: a later event of the prediction numbers them alike.
        #expect(OutputURLWalker.urls(inJSON: kept) == sync.outputs)

        let mixed = Array(
            #"""
            {"id":"mix1","status":"succeeded","output":{"z":"https://replicate.delivery/a/z.png","a":["data:image\/png;base64,AAAA","caption"],"m":"DATA:;base64,AAAA"}}
            """#.utf8)
        let parsed = try ReplicatePrediction.parse(mixed)
        #expect(
            parsed.outputs == [
                .init(pointer: "/a/0", url: "data:image/png;base64"), .init(pointer: "/m", url: "data:;base64"),
                .init(pointer: "/z", url: "https://replicate.delivery/a/z.png"),
            ])
        let outputText = try #require(parsed.outputJSON)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(outputText.utf8)) as? [String: Any])
        #expect((object["a"] as? [String]) == ["data:image/png;base64,", "caption"])
        #expect(object["m"] as? String == "data:;base64,")
        // A non-terminal event queues nothing, but the body still says where the bytes are.
        let processing = try ReplicatePrediction.parse(Array(#"{"id":"p","status":"processing","output":["data:image/png;base64,AAAA"]}"#.utf8))
        #expect(processing.outputs.isEmpty)
        #expect(processing.outputsInBody.count == 1)
    }

    @Test func dataURIHeaders() {
        func header(_ text: String) -> DataURI.Header? { DataURI.header(text.utf8) }
        #expect(header("data:image/png;base64,AAAA") == .init(text: "data:image/png;base64", mediaType: "image/png", isBase64: true, length: 22))
        #expect(header("DATA:Image/PNG;BASE64,AAAA")?.mediaType == "image/png")
        #expect(header("DATA:Image/PNG;BASE64,AAAA")?.text == "data:Image/PNG;BASE64")
        #expect(header("data:text/plain;charset=utf-8,hello")?.isBase64 == false)
        #expect(header("data:,hello")?.mediaType == nil)
        #expect(header("data:;base64,AAAA")?.isBase64 == true)
        for text in [
            "data:", "data: x, y", "data:image/png;base64", "data:image;base64,AA", "data:image/png;x;base64,AA",
            "data:image/png\u{0};base64,AA", "database: 42", "data:" + String(repeating: "a", count: 300) + "/b,AA",
            "https://x/data:a,b",
        ] {
            #expect(header(text) == nil, "\(text.debugDescription)")
        }
        func may(_ text: String) -> Bool { Array(text.utf8).withUnsafeBufferPointer(DataURI.mayOccur) }
        #expect(may(#"{"output":["DaTa:image/png;base64,AA"]}"#))
        #expect(may(#""data:"#))
        #expect(!may(#"{"output":["https://replicate.delivery/a/data.png"]}"#))
        #expect(!may(#"{"output":"data"}"#))
    }

    /// The payload decoder: base64 (through Base64StreamDecoder) or percent-encoding, fed in any pieces.
    @Test func dataURIPayloads() throws {
        func decode(_ text: String, pieces: Int) throws -> [UInt8] {
            let header = try #require(DataURI.header(text.utf8))
            var out: [UInt8] = []
            let decoder = DataURIPayloadDecoder(header: header) { out.append(contentsOf: $0) }
            let bytes = Array(text.utf8)
            let size = max(1, bytes.count / pieces)
            for start in stride(from: 0, to: bytes.count, by: size) {
                try bytes[start..<min(bytes.count, start + size)].withUnsafeBufferPointer { try decoder.decode($0) }
            }
            try decoder.finish()
            return out
        }
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0, 1, 2, 0xFF]
        let text = "data:image/png;base64," + Data(png).base64EncodedString()
        for pieces in [1, 3, 7, 40] { #expect(try decode(text, pieces: pieces) == png) }
        #expect(try decode("data:text/plain,a%20b%2Fc", pieces: 4) == Array("a b/c".utf8))
        for bad in ["data:image/png;base64,AA!A", "data:image/png;base64,A", "data:,50%", "data:,50%zz", "data:,\u{7F}"] {
            #expect(throws: Base64StreamDecoder.Failure.self, "\(bad)") { try decode(bad, pieces: 2) }
        }
        #expect(DataURI.contentType(header: try #require(DataURI.header("data:image/webp;base64,".utf8)), head: []) == "image/webp")
        #expect(DataURI.contentType(header: try #require(DataURI.header("data:application/octet-stream;base64,".utf8)), head: png) == "image/png")
        #expect(DataURI.contentType(header: try #require(DataURI.header("data:;base64,".utf8)), head: [0xFF, 0xD8, 0xFF, 0]) == "image/jpeg")
    }

    /// PostgreSQL cannot hold NUL: the interpreted copy leaves NULs out (text and jsonb), the raw body keeps
    /// them; URLs with control characters are text, keys with NUL name the same output without it.
    @Test func nulsAreLeftOutOfTheKeptFields() throws {
        let body = Array(
            #"""
            {"id":"nul1","status":"succeeded","model":"a\u0000b","version":"v\u0000","error":"bad\u0000thing",
             "input":{"prompt":"a\u0000b","k\u0000":"\\u0000 stays"},"metrics":{"n\u0000":1},
             "output":{"x\u0000":"https://replicate.delivery/a/1.png","y":"https://replicate.delivery/a/2\u0000.png"}}
            """#.utf8)
        let p = try ReplicatePrediction.parse(body)
        #expect(p.model == "ab" && p.version == "v" && p.error == "badthing")
        func strings(_ value: Any) -> [String] {
            switch value {
            case let text as String: return [text]
            case let array as [Any]: return array.flatMap(strings)
            case let object as [String: Any]: return object.keys.map { $0 } + object.values.flatMap(strings)
            default: return []
            }
        }
        for text in [p.inputJSON, p.outputJSON, p.metricsJSON] {
            let value = try JSONSerialization.jsonObject(with: Data(try #require(text).utf8))
            #expect(!strings(value).isEmpty)
            #expect(strings(value).allSatisfy { !$0.contains("\0") }, "\(String(describing: text))")
        }
        #expect(p.inputJSON?.contains(#""\\u0000 stays""#) == true, "an escaped backslash is not a NUL")
        #expect(p.outputs == [.init(pointer: "/x", url: "https://replicate.delivery/a/1.png")])
        #expect(!OutputURLWalker.isFetchableURL("https://replicate.delivery/a/2\u{0}.png"))
    }

    @Test func predictionIDs() {
        for good in ["gm3qorzdhgbfurvjtvhg6dckhu", "a", "a.b", "...", "é", String(repeating: "x", count: 128)] {
            #expect(PredictionID.isSafe(good), "\(good)")
        }
        for bad in [
            "", ".", "..", "a/b", "/", "a\\b", "a\u{0}", "a\nb", "a\u{7F}", "a\u{85}", String(repeating: "x", count: 129),
            String(repeating: "é", count: 65),
        ] {
            #expect(!PredictionID.isSafe(bad), "\(bad.debugDescription)")
        }
    }

    /// A Stability body with inline bytes used to skip the generation id check, so its id reached the key.
    @Test func stabilityGenerationIDIsCheckedWithArtifacts() {
        for body in [
            #"{"id": "../../replicate/x", "image": "iVBORw0KGgo="}"#, #"{"id": "a/b", "artifacts": [{"base64": "iVBORw0KGgo="}]}"#,
            #"{"id": "..", "image": "iVBORw0KGgo="}"#, #"{"id": "", "image": "iVBORw0KGgo="}"#,
        ] {
            #expect(throws: StabilityBody.ParseError.self, "\(body)") {
                try Array(body.utf8).withUnsafeBufferPointer { try StabilityBody.parse($0) }
            }
        }
        #expect(throws: Never.self) {
            try Array(#"{"id": "gen-1", "image": "iVBORw0KGgo="}"#.utf8).withUnsafeBufferPointer { try StabilityBody.parse($0) }
        }
    }

    @Test func tokenHosts() {
        let credential = SourceCredential(token: "r8_x", hosts: ["replicate.delivery", "*.replicate.delivery"])
        #expect(credential.headers(for: "replicate.delivery").map(\.1) == ["Bearer r8_x"])
        #expect(credential.headers(for: "PBXT.replicate.delivery").count == 1)
        for host in ["api.replicate.com", "api.stability.ai", "replicate.delivery.evil.example", "evilreplicate.delivery", "", "127.0.0.1"] {
            #expect(credential.headers(for: host).isEmpty, "\(host)")
        }
        #expect(SourceCredential(token: "", hosts: ["replicate.delivery"]).headers(for: "replicate.delivery").isEmpty)
    }
}
