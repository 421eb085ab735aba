import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// The Stability issue end to end: the real daemon, real PostgreSQL and SeaweedFS, a fake Stability API.
@Suite("Stability: inline results and async generations archived", .serialized)
struct StabilityArchiveTests {
    static let onePixelPNG = Array(
        Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")!)
    static let referenceID = "a6dc6c6e20acda010fe14d71f180658f2896ed9b4ec25aa99a6ff06c796987c4"

    @Test func everyFixtureIsArchivedAndServedByItsPresignedURL() throws {
        let rig = try StabilityRig()
        // 202 then the bytes (polls are 10 s apart; StabilityRealFormatsTests times them).
        try rig.fake.script(Self.referenceID, "202,200", size: 5000, type: "image/webp", finishReason: "SUCCESS", seed: 4_294_967_294)
        let daemon = try rig.startDaemon()

        var predictions: [String: String] = [:]
        for name in ["v1-artifacts.json", "v2beta-image.json", "async-reference.json"] {
            let answer = try rig.post(try rig.fixture(name), to: daemon)
            #expect(answer.status == 200, "\(name): \(String(decoding: answer.body, as: UTF8.self))")
            let json = StabilityRig.json(answer)
            #expect(json["status"] as? String == "accepted")
            predictions[name] = json["prediction_id"] as? String
        }
        // Inline results are named after their bytes; both fixtures carry the same pixel, so they are two
        // outputs (0 and 1) of one prediction. The reference is named after its generation.
        let pixel = FakeProvider.sha256Hex(Self.onePixelPNG)
        #expect(predictions["v1-artifacts.json"] == pixel)
        #expect(predictions["v2beta-image.json"] == pixel)
        #expect(predictions["async-reference.json"] == Self.referenceID)

        try rig.harness.waitForAssets("stored", count: 3, timeout: .seconds(60))
        let inline = try rig.assets(predictionID: pixel)
        #expect(inline.map(\.pointer) == ["/artifacts/0", "/image"])
        for asset in inline {
            try rig.expectStored(asset, equals: Self.onePixelPNG)
            #expect(asset.sourceKind == "inline")
            #expect(asset.contentType == "image/png")
            #expect(asset.finishReason == "SUCCESS")
        }
        #expect(inline.map(\.seed) == [1_050_625_087, 343_940_597])
        #expect(inline.compactMap(\.key).map { String($0.split(separator: "/").last!) } == ["0.png", "1.png"])

        // 202, then the bytes: fetched once, with Stability's headers recorded.
        let result = try #require(try rig.assets(predictionID: Self.referenceID).first)
        try rig.expectStored(result, equals: FakeStability.bytes(Self.referenceID, size: 5000))
        #expect(result.sourceKind == "stability_result")
        #expect(result.contentType == "image/webp")
        #expect(result.finishReason == "SUCCESS")
        #expect(result.seed == 4_294_967_294)
        #expect(try rig.fake.count(Self.referenceID) == 2)
        #expect(try rig.fake.stats().unauthorized == 0)
        #expect(
            try rig.harness.scalar("SELECT status FROM predictions WHERE provider = 'stability' AND id = $1", [Self.referenceID], as: String.self)
                == "succeeded")
        #expect(
            try rig.harness.scalar("SELECT attempts FROM assets WHERE id = $1", [result.id], as: Int.self) == 1,
            "polls of a 202 must not count as tries")
        // Spool files are gone once stored, and the key never reaches the log.
        #expect(try FileManager.default.contentsOfDirectory(atPath: rig.harness.spoolDirectory).isEmpty)
        try daemon.stop()
        #expect(!daemon.log.contains(rig.fake.apiKey))
    }

    @Test func aGenerationThatIsGoneAfterItsDeadlineEndsExpired() throws {
        let rig = try StabilityRig()
        let id = "gone-\(UUID().uuidString.lowercased())"
        try rig.fake.script(id, "404")
        let daemon = try rig.startDaemon()
        let answer = try rig.post(Array(#"{"id": "\#(id)"}"#.utf8), to: daemon)
        #expect(answer.status == 200)
        let deadline = try rig.harness.scalar(
            "SELECT deadline - received_at FROM assets a JOIN deliveries d ON d.id = a.delivery_id WHERE a.prediction_id = $1",
            [id], as: String.self)
        #expect(deadline == "1 day" || deadline == "24:00:00", "deadline is received_at + 24 h, not \(deadline)")
        // Before the deadline a 404 is retried; once the deadline has passed it means the result is gone.
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "a first poll") { try rig.fake.count(id) >= 1 }
        #expect(try rig.assets(predictionID: id).first?.state != "expired")
        let connection = try rig.harness.connection()
        try connection.execute("UPDATE assets SET deadline = now() - interval '1 second', next_attempt_at = now() WHERE prediction_id = $1", [id])
        connection.close()
        try rig.harness.waitForAssets("expired", count: 1, timeout: .seconds(60))
        let asset = try #require(try rig.assets(predictionID: id).first)
        #expect(asset.failureReason?.contains("404") == true, "\(asset.failureReason ?? "no reason")")
        #expect(asset.key == nil)
        try daemon.stop()
    }

    @Test func theSameSignedBodyTwiceMakesOneSetOfObjects() throws {
        let rig = try StabilityRig()
        try rig.fake.script(Self.referenceID, "200", size: 3000)
        let daemon = try rig.startDaemon()
        let inline = try rig.fixture("v2beta-image.json")
        let reference = try rig.fixture("async-reference.json")
        for body in [inline, reference] {
            let webhookID = "msg_\(UUID().uuidString)"
            let first = try rig.post(body, to: daemon, webhookID: webhookID)
            let again = try rig.post(body, to: daemon, webhookID: webhookID)
            #expect(first.status == 200 && again.status == 200)
            #expect(StabilityRig.json(again)["status"] as? String == "duplicate")
            #expect(StabilityRig.json(again)["prediction_id"] as? String == StabilityRig.json(first)["prediction_id"] as? String)
            // A new webhook id for the same content: a new delivery, but no new object.
            let resent = try rig.post(body, to: daemon)
            #expect(StabilityRig.json(resent)["status"] as? String == "accepted")
        }
        try rig.harness.waitForAssets("stored", count: 2)
        #expect(try rig.harness.scalar("SELECT count(*) FROM deliveries WHERE provider = 'stability'", as: Int.self) == 4)
        let assets = try rig.assets()
        #expect(assets.count == 2)
        #expect(Set(assets.compactMap(\.key)).count == 2)
        #expect(try rig.fake.count(Self.referenceID) == 1)
        // Spool files of the resent inline body were removed, not left behind.
        try waitUntil(timeout: .seconds(10), "spool empty") {
            try FileManager.default.contentsOfDirectory(atPath: rig.harness.spoolDirectory).isEmpty
        }
        try daemon.stop()
    }

    @Test func contentFilteredIsKeptInvalidBase64IsRefusedButKeptAndTheReplicateSecretIsNotEnough() throws {
        let rig = try StabilityRig()
        let daemon = try rig.startDaemon()
        let bytes = FakeProvider.bytes("filtered", size: 777)
        let filtered = Array(
            #"{"image": "\#(Data(bytes).base64EncodedString())", "finish_reason": "CONTENT_FILTERED", "seed": 9, "prediction_id": "app-1"}"#.utf8)
        let accepted = try rig.post(filtered, to: daemon)
        #expect(accepted.status == 200)
        #expect(StabilityRig.json(accepted)["prediction_id"] as? String == "app-1")

        let invalid = Array(#"{"video": "AAAA!!!!", "finish_reason": "SUCCESS"}"#.utf8)
        let refused = try rig.post(invalid, to: daemon)
        #expect(refused.status == 400)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("base64"))
        #expect(try rig.harness.scalar("SELECT count(*) FROM deliveries WHERE outcome = 'unparseable' AND body = $1", [invalid], as: Int.self) == 1)

        let wrongSecret = try rig.post(filtered, to: daemon, secret: rig.harness.secret)
        #expect(wrongSecret.status == 401)

        // The app reuses its prediction_id for another result: a second output, not a silent drop.
        let other = FakeProvider.bytes("other", size: 555)
        let reused = Array(#"{"image": "\#(Data(other).base64EncodedString())", "finish_reason": "SUCCESS", "prediction_id": "app-1"}"#.utf8)
        #expect(try rig.post(reused, to: daemon).status == 200)

        try rig.harness.waitForAssets("stored", count: 2)
        let assets = try rig.assets(predictionID: "app-1")
        try #require(assets.count == 2)
        try rig.expectStored(assets[0], equals: bytes)
        #expect(assets[0].finishReason == "CONTENT_FILTERED")
        #expect(assets[0].seed == 9)
        try rig.expectStored(assets[1], equals: other)
        #expect(assets[1].pointer.hasPrefix("/image@"))
        #expect(assets[0].key == "\(rig.harness.prefix)stability/app-1/0")  // not a known format: no extension
        #expect(assets[1].key == "\(rig.harness.prefix)stability/app-1/1")
        #expect(try rig.harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 3)
        #expect(try rig.harness.scalar("SELECT count(*) FROM assets", as: Int.self) == 2)
        try daemon.stop()
    }

    @Test func aThirtyMiBInlineVideoIsAcceptedWithBoundedMemoryAndSixtyFiveMiBIsRefused() throws {
        let rig = try StabilityRig()
        let daemon = try rig.startDaemon()
        let pid = daemon.process.processIdentifier
        // Warm up the paths (database connections, S3 client) so the baseline is the daemon at work.
        #expect(try rig.post(try rig.fixture("v2beta-image.json"), to: daemon).status == 200)
        try rig.harness.waitForAssets("stored", count: 1)
        let before = try StabilityRig.memory(pid: pid)

        var video = [UInt8](repeating: 0, count: 30 << 20)
        video.replaceSubrange(0..<8, with: [0, 0, 0, 0x18] + Array("ftyp".utf8))
        for index in stride(from: 8, to: video.count, by: 4096) { video[index] = UInt8(truncatingIfNeeded: index >> 12) }
        var body = Array(#"{"video": ""#.utf8)
        body.append(contentsOf: Data(video).base64EncodedData())
        body.append(contentsOf: Array(#"", "finish_reason": "SUCCESS", "seed": 7}"#.utf8))
        let answer = try rig.post(body, to: daemon)
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        let afterAccept = try StabilityRig.memory(pid: pid)
        let predictionID = try #require(StabilityRig.json(answer)["prediction_id"] as? String)
        #expect(predictionID == FakeProvider.sha256Hex(video))

        try rig.harness.waitForAssets("stored", count: 2, timeout: .seconds(90))
        let afterStore = try StabilityRig.memory(pid: pid)
        let bodyMiB = Double(body.count) / 1_048_576
        let growthMiB = Double(afterAccept.peak - before.peak) / 1024
        print(
            """
            stability memory: body \(String(format: "%.1f", bodyMiB)) MiB (30 MiB decoded); daemon VmHWM before \(before.peak / 1024) MiB \
            (VmRSS \(before.current / 1024) MiB), after accepting \(afterAccept.peak / 1024) MiB, after storing \(afterStore.peak / 1024) MiB \
            (VmRSS \(afterStore.current / 1024) MiB); growth while accepting \(String(format: "%.1f", growthMiB)) MiB
            """)
        // Measured: about 2 × the body — the HTTP layer's copy and libpq's send buffer on the way to
        // deliveries.body (PQ hands large parameters to libpq without a staging copy). The decode itself adds
        // 64 KiB; one more copy of the body, a String/Data/JSON tree or a decoded copy would fail this bound.
        #expect(growthMiB < bodyMiB * 2.5, "peak grew by \(growthMiB) MiB for a \(bodyMiB) MiB body")

        let asset = try #require(try rig.assets(predictionID: predictionID).first)
        try rig.expectStored(asset, equals: video)
        #expect(asset.contentType == "video/mp4")
        #expect(asset.key?.hasSuffix("/0.mp4") == true)

        var huge = Array(#"{"video": ""#.utf8)
        huge.append(contentsOf: [UInt8](repeating: UInt8(ascii: "A"), count: 65 << 20))
        huge.append(contentsOf: Array(#""}"#.utf8))
        let tooLarge = try rig.post(huge, to: daemon)
        #expect(tooLarge.status == 413)
        #expect(try rig.harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 2)
        try daemon.stop()
    }

    @Test func inlineBytesWhoseSpoolIsElsewhereAreDecodedAgainFromTheDeliveryNeverDownloaded() throws {
        let rig = try StabilityRig()
        // Machine A accepts (no workers); machine B, with its own empty spool, archives.
        let spoolA = rig.harness.spoolDirectory + "-a"
        let spoolB = rig.harness.spoolDirectory + "-b"
        defer {
            try? FileManager.default.removeItem(atPath: spoolA)
            try? FileManager.default.removeItem(atPath: spoolB)
        }
        let bytes = FakeProvider.bytes("elsewhere", size: 100_000)
        let body = Array(#"{"artifacts": [{"base64": "\#(Data(bytes).base64EncodedString())", "seed": 5, "finishReason": "SUCCESS"}]}"#.utf8)
        let accepting = try rig.startDaemon(extra: ["AFTERIMAGE_WORKERS_COUNT": "0"], spool: spoolA)
        #expect(try rig.post(body, to: accepting).status == 200)
        let files = try FileManager.default.contentsOfDirectory(atPath: spoolA)
        #expect(files.count == 1 && files[0].hasSuffix(".inline"), "\(files)")
        try accepting.stop()

        let archiving = try rig.startDaemon(spool: spoolB)
        try rig.harness.waitForAssets("stored", count: 1)
        let asset = try #require(try rig.assets().first)
        try rig.expectStored(asset, equals: bytes)
        #expect(asset.seed == 5)
        #expect(archiving.log.contains("spool file of an inline result is missing"))
        try archiving.stop()
    }
}
