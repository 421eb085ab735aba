import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Issue 5's "seed and finish reason are part of the lookup answer", through the real daemon: Stability
/// results posted as signed webhooks, archived, then looked up with a bearer token.
@Suite("Lookup: Stability results show finish reason, seed and where the bytes came from", .serialized)
struct LookupStabilityTests {
    @Test func inlineAndPolledResultsCarryFinishReasonAndSeedAndInlineMarkersAreNeverLinks() throws {
        let rig = try StabilityRig()
        let referenceID = StabilityArchiveTests.referenceID
        try rig.fake.script(referenceID, "200", size: 3000, type: "image/webp", finishReason: "CONTENT_FILTERED", seed: 4_294_967_294)
        let token = randomToken()
        let daemon = try rig.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token])
        let client = try LookupClient(port: daemon.port, token: token)

        for name in ["v1-artifacts.json", "v2beta-image.json", "async-reference.json"] {
            let answer = try rig.post(try rig.fixture(name), to: daemon)
            #expect(answer.status == 200, "\(name): \(String(decoding: answer.body, as: UTF8.self))")
        }
        try rig.harness.waitForAssets("stored", count: 3, timeout: .seconds(60))
        // The marker really is in the database, so the checks below can fail if the API passed it through.
        #expect(try rig.harness.scalar("SELECT count(*) FROM assets WHERE source_url LIKE 'inline:%'", as: Int.self) == 2)

        // Inline results: both fixtures carry the same pixel, so they are outputs 0 and 1 of one prediction.
        let pixel = FakeProvider.sha256Hex(StabilityArchiveTests.onePixelPNG)
        let answer = try client.send("GET", "/v1/predictions/stability/\(pixel)")
        #expect(answer.status == 200)
        #expect(!String(decoding: answer.body, as: UTF8.self).contains("inline:"), "an inline marker leaked into the answer")
        let assets = try client.json(answer)["assets"] as? [[String: Any]] ?? []
        #expect(assets.count == 2)
        #expect(assets.map { $0["finish_reason"] as? String } == ["SUCCESS", "SUCCESS"])
        #expect(assets.map { ($0["seed"] as? NSNumber)?.int64Value } == [1_050_625_087, 343_940_597])
        for asset in assets {
            #expect(asset["source_kind"] as? String == "inline")
            #expect(asset["source_url"] is NSNull, "an inline asset has no link: \(asset["source_url"] ?? "absent")")
            let url = try #require(asset["url"] as? String)
            let fetched = try LookupClient.fetch(url)
            #expect(fetched.status == 200)
            #expect(fetched.body == StabilityArchiveTests.onePixelPNG, "the presigned URL does not serve the decoded image")
        }

        // A polled result: the results endpoint needs the API key, so it is not presented as a link either.
        let polled = try client.json(try client.send("GET", "/v1/predictions/stability/\(referenceID)"))
        let result = try #require((polled["assets"] as? [[String: Any]])?.first)
        #expect(result["source_kind"] as? String == "stability_result")
        #expect(result["source_url"] is NSNull)
        #expect(result["finish_reason"] as? String == "CONTENT_FILTERED")
        #expect((result["seed"] as? NSNumber)?.int64Value == 4_294_967_294)
        let bytes = try LookupClient.fetch(try #require(result["url"] as? String))
        #expect(bytes.body == FakeStability.bytes(referenceID, size: 3000))

        // The listing shows the same fields.
        let page = try client.json(try client.send("GET", "/v1/assets?provider=stability&limit=10"))
        let listed = page["assets"] as? [[String: Any]] ?? []
        #expect(listed.count == 3)
        #expect(Set(listed.compactMap { ($0["seed"] as? NSNumber)?.int64Value }) == [1_050_625_087, 343_940_597, 4_294_967_294])
        #expect(listed.allSatisfy { $0["source_url"] is NSNull && $0["finish_reason"] is String })

        // outputs/{n} of an inline result redirects to the decoded bytes.
        let redirect = try client.send("GET", "/v1/predictions/stability/\(pixel)/outputs/1")
        #expect(redirect.status == 302)
        #expect(try LookupClient.fetch(try #require(redirect.headers["location"])).body == StabilityArchiveTests.onePixelPNG)

        try client.validateCaptured()
        try daemon.stop()
    }

    @Test func aDownloadedOutputShowsItsSourceLinkAndNoStabilityFields() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token, "AFTERIMAGE_WORKERS_COUNT": "0"])
        let client = try LookupClient(port: daemon.port, token: token)
        let id = "lks\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        var seeded = ArchiveHarness.SeededAsset(state: "pending")
        seeded.sourceURL = "https://replicate.delivery/xezq/\(id)/out-0.png"
        try harness.seedAsset(predictionID: id, index: 0, seeded)

        let asset = try #require((try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))["assets"] as? [[String: Any]])?.first)
        #expect(asset["source_kind"] as? String == "url")
        #expect(asset["source_url"] as? String == seeded.sourceURL)
        #expect(asset["finish_reason"] is NSNull)
        #expect(asset["seed"] is NSNull)
        try client.validateCaptured()
        try daemon.stop()
    }
}
