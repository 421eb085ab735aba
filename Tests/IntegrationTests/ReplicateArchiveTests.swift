import Foundation
import PQ
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// The Replicate issue end to end: the real daemon, real PostgreSQL and SeaweedFS, the fake provider.
@Suite("Replicate: every output archived", .serialized)
struct ReplicateArchiveTests {
    /// Loads a shared fixture and points its output URLs at the fake provider (same file names), with
    /// `completed_at` set to now so its deadline is in the future.
    func fixture(_ name: String, harness: ArchiveHarness, size: Int = 4096) throws -> (body: [UInt8], id: String, files: [String]) {
        let url = TestEnvironment.fixturesDirectory.appendingPathComponent("replicate/\(name)")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var files: [String] = []
        func rewrite(_ value: Any) -> Any {
            switch value {
            case let string as String where string.hasPrefix("https://replicate.delivery/"):
                let file = "\(object["id"] as! String)-" + URL(string: string)!.lastPathComponent
                files.append(file)
                let type = file.hasSuffix(".png") ? "image/png" : file.hasSuffix(".webp") ? "image/webp" : "application/octet-stream"
                return harness.fake.url(file, "size=\(size + files.count)&type=\(type)")
            case let array as [Any]: return array.map(rewrite)
            case let dictionary as [String: Any]: return dictionary.mapValues(rewrite)
            default: return value
            }
        }
        if let output = object["output"] { object["output"] = rewrite(output) }
        if object["completed_at"] is String { object["completed_at"] = ISO8601DateFormatter().string(from: Date()) }
        let body = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        return (body, object["id"] as! String, files)
    }

    func expectStoredBytes(_ harness: ArchiveHarness, predictionID: String, files: [String]) throws {
        let stored = try harness.storedAssets(predictionID: predictionID)
        #expect(stored.count == files.count, "\(predictionID): \(stored.count) stored, \(files.count) expected")
        let storage = try harness.storage()
        for asset in stored {
            let name = URL(string: asset.sourceURL)!.lastPathComponent
            let size = Int(URLComponents(string: asset.sourceURL)!.queryItems!.first { $0.name == "size" }!.value!)!
            let expected = FakeProvider.bytes(name, size: size)
            let object = try storage.getObject(key: asset.key)
            #expect(object == expected, "bytes of \(asset.key) differ from the source")
            #expect(asset.sha256 == FakeProvider.sha256Hex(expected))
            #expect(asset.size == Int64(size))
            #expect(asset.key.hasPrefix("\(harness.prefix)replicate/\(predictionID)/"))
            let info = try #require(try storage.headObject(key: asset.key))
            #expect(info.metadata["sha256"] == asset.sha256)
            #expect(info.metadata["source-url"] != nil)
        }
    }

    @Test func everyFixtureIsArchivedOrRecordedAsDescribed() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        // starting.json is an early event of succeeded-list.json's prediction, sent after it here: it
        // must not move that prediction back, nor add or remove outputs.
        var expected: [(String, [String])] = []
        for name in [
            "succeeded-list.json", "succeeded-string.json", "succeeded-nested.json", "succeeded-text.json",
            "failed.json", "starting.json", "data-removed.json",
        ] {
            let (body, id, files) = try fixture(name, harness: harness)
            let answer = try harness.post(body, to: daemon)
            #expect(answer.status == 200, "\(name): \(String(decoding: answer.body, as: UTF8.self))")
            let json = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
            #expect(json?["status"] as? String == "accepted")
            #expect(json?["prediction_id"] as? String == id)
            if let index = expected.firstIndex(where: { $0.0 == id }) { expected[index].1 += files } else { expected.append((id, files)) }
        }
        let total = expected.map(\.1.count).reduce(0, +)
        #expect(total == 6)  // list 2 + string 1 + nested 3; text, failed, starting, data_removed none
        try harness.waitForAssets("stored", count: total)
        for (id, files) in expected { try expectStoredBytes(harness, predictionID: id, files: files) }
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 6)
        #expect(try harness.scalar("SELECT count(*) FROM assets", as: Int.self) == 6)
        #expect(try harness.scalar("SELECT status FROM predictions WHERE id = 'gm3qorzdhgbfurvjtvhg6dckhu'", as: String.self) == "succeeded")
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE status = 'starting'", as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE status = 'failed' AND error IS NOT NULL", as: Int.self) == 1)
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE data_removed", as: Int.self) == 1)
        for file in expected.flatMap(\.1) { #expect(try harness.fake.count(file) == 1, "\(file) downloaded more than once") }
        // The spool is empty once everything is stored.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory)
        #expect(leftovers.isEmpty, "spool not cleaned: \(leftovers)")
        #expect(try daemon.stop() == 0)
        #expect(!daemon.log.contains(harness.secret))
    }

    @Test func repeatsAndOutOfOrderEventsMakeOnePredictionAndOneObjectPerOutput() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let id = "dup\(UUID().uuidString.prefix(8).lowercased())"
        let files = ["\(id)-a.png", "\(id)-b.png"]
        let output = files.map { harness.fake.url($0, "size=3000&type=image/png") }
        let completed = harness.prediction(id: id, output: output)
        for _ in 0..<3 {
            let answer = try harness.post(completed, to: daemon, webhookID: "msg_\(id)_completed")
            #expect(answer.status == 200)
        }
        let again = try harness.post(completed, to: daemon, webhookID: "msg_\(id)_completed")
        #expect(String(decoding: again.body, as: UTF8.self).contains("\"duplicate\""))
        // A start event that arrives late, and the same completion under a new webhook id.
        let start = harness.prediction(id: id, status: "starting", output: nil, completedAt: nil)
        #expect(try harness.post(start, to: daemon).status == 200)
        #expect(try harness.post(completed, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 2)
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE id = $1", [id], as: Int.self) == 1)
        #expect(try harness.scalar("SELECT status FROM predictions WHERE id = $1", [id], as: String.self) == "succeeded")
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [id], as: Int.self) == 2)
        #expect(try harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 3)
        try expectStoredBytes(harness, predictionID: id, files: files)
        for file in files { #expect(try harness.fake.count(file) == 1) }
        #expect(try daemon.stop() == 0)
    }

    @Test func badSignaturesAndOversizedBodiesWriteNothing() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_HTTP_MAX_BODY_BYTES": "4096"])
        let body = harness.prediction(id: "sig1", output: [harness.fake.url("sig1.png")])
        let tampered = try harness.post(body, to: daemon, tamper: true)
        #expect(tampered.status == 401)
        #expect(String(decoding: tampered.body, as: UTF8.self).contains("signature_invalid"))
        let wrongSecret = try harness.post(body, to: daemon, secret: "whsec_" + Data("not the secret".utf8).base64EncodedString())
        #expect(wrongSecret.status == 401)
        let stale = try harness.post(body, to: daemon, timestamp: Int64(Date().timeIntervalSince1970) - 600)
        #expect(stale.status == 401)
        let big = harness.prediction(id: "big1", output: [harness.fake.url("big1.png")]) + Array(repeating: 0x20, count: 5000)
        #expect(try harness.post(big, to: daemon).status == 413)
        #expect(try harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 0)
        // Well-formed JSON that jsonb cannot hold as sent (a NUL escape): kept raw, interpreted without the NUL,
        // answered 200, never a 503 loop.
        let nul = Array(#"{"id": "nul1", "status": "succeeded", "input": {"prompt": "a\u0000b"}, "output": null}"#.utf8)
        let kept = try harness.post(nul, to: daemon, webhookID: "msg_nul")
        #expect(kept.status == 200, "\(String(decoding: kept.body, as: UTF8.self))")
        #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = 'msg_nul'", as: [UInt8].self) == nul)
        #expect(try harness.scalar("SELECT input->>'prompt' FROM predictions WHERE id = 'nul1'", as: String.self) == "ab")
        // A signed body that is not a prediction is kept raw and answered 400.
        let odd = Array(#"{"hello": "world"}"#.utf8)
        let answer = try harness.post(odd, to: daemon, webhookID: "msg_odd")
        #expect(answer.status == 400)
        #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = 'msg_odd'", as: [UInt8].self) == odd)
        #expect(try daemon.stop() == 0)
    }

    @Test func privateAddressesAreRefusedAfterDNSWithoutARequest() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "false"])
        let id = "ssrf\(UUID().uuidString.prefix(6).lowercased())"
        // "localhost" is on the allowlist by name; it resolves to loopback, which must be refused.
        let viaName = "http://localhost:\(harness.fake.port)/files/\(id)-name.png"
        let body = harness.prediction(id: id, output: [harness.fake.url("\(id)-ip.png"), viaName])
        let extra = try harness.post(body, to: daemon)
        #expect(extra.status == 200)
        try harness.waitForAssets("failed", count: 1)
        try waitUntil(timeout: .seconds(30), "both assets failed") {
            try harness.scalar("SELECT count(*) FROM assets WHERE state = 'failed'", as: Int.self) == 2
        }
        let reasons = try harness.connection().query("SELECT failure_reason FROM assets ORDER BY id").map { try $0.decode(0, as: String.self) }
        #expect(reasons.allSatisfy { $0.contains("private") || $0.contains("allowed_hosts") }, "\(reasons)")
        #expect(try harness.fake.stats().counts.isEmpty, "the fake provider was contacted")
        #expect(try daemon.stop() == 0)
    }
}
