import Crypto
import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Ideogram and fal end to end: the real daemon, PostgreSQL and SeaweedFS, a fake provider that publishes
/// the key set and serves the files, deliveries signed with Ed25519 as the providers sign them.
@Suite("Ideogram and fal: Ed25519-signed deliveries", .serialized)
struct SignedProvidersTests {
    func ideogramBody(_ rig: SignedProviderRig, id: String, files: [String], created: Date = Date()) -> [UInt8] {
        var data: [[String: Any]] = files.enumerated().map { index, file in
            [
                "url": rig.fake.url(file, "size=\(3000 + index)&type=image/png"), "prompt": "A photo of a cat", "resolution": "1024x1024",
                "seed": 12345 + index, "is_image_safe": true,
            ]
        }
        // One image withheld by the safety check: recorded, not archived.
        data.append(["url": "", "prompt": "A photo of a cat", "resolution": "1024x1024", "seed": 99, "is_image_safe": false])
        let object: [String: Any] = ["generation_id": id, "created": ISO8601DateFormatter().string(from: created), "data": data]
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    func count(_ rig: SignedProviderRig, _ table: String) throws -> Int {
        try rig.harness.scalar("SELECT count(*) FROM \(table)", as: Int.self)
    }

    @Test func ideogramDeliveriesAreArchivedDedupedAndLookedUp() throws {
        let rig = try SignedProviderRig()
        try rig.publish(["k1"])
        let daemon = try rig.startDaemon()
        let id = "xtdZiqPwRxqY1Y7NExFm\(UUID().uuidString.prefix(6))"
        let files = ["\(id)-0.png", "\(id)-1.png"]
        let created = Date().addingTimeInterval(-600)
        let body = ideogramBody(rig, id: id, files: files, created: created)
        let answer = try rig.post(.ideogram, body, id: id, to: daemon)
        #expect(answer.status == 200, "\(SignedProviderRig.text(answer))")
        let json = SignedProviderRig.json(answer)
        #expect(json["status"] as? String == "accepted")
        #expect(json["prediction_id"] as? String == id)
        #expect(json["assets"] as? Int == 2)

        try rig.harness.waitForAssets("stored", count: 2)
        let stored = try rig.harness.storedAssets(predictionID: id)
        #expect(stored.map(\.pointer) == ["/0/url", "/1/url"])
        let storage = try rig.harness.storage()
        for (index, asset) in stored.enumerated() {
            #expect(asset.key == "\(rig.harness.prefix)ideogram/\(id)/\(index).png")
            #expect(try storage.getObject(key: asset.key) == FakeProvider.bytes(files[index], size: 3000 + index))
        }
        // Due 24 hours after the generation was created (ideogram.retention), with each image's seed.
        let deadline = try rig.harness.scalar("SELECT extract(epoch FROM min(deadline))::float8 FROM assets", as: Double.self)
        #expect(abs(deadline - created.addingTimeInterval(86400).timeIntervalSince1970) < 2)
        #expect(try rig.harness.scalar("SELECT string_agg(seed::text, ',' ORDER BY output_index) FROM assets", as: String.self) == "12345,12346")
        #expect(
            try rig.harness.scalar("SELECT status FROM predictions WHERE provider = 'ideogram' AND id = $1", [id], as: String.self) == "succeeded")

        // Ideogram retries with a new timestamp and signature over the same body: a duplicate, nothing fetched twice.
        let again = try rig.post(.ideogram, body, id: id, to: daemon, timestamp: Int64(Date().timeIntervalSince1970) - 5)
        #expect(again.status == 200)
        #expect(SignedProviderRig.json(again)["status"] as? String == "duplicate")
        #expect(try count(rig, "deliveries") == 1)
        for file in files { #expect(try rig.fake.count(file) == 1, "\(file) downloaded more than once") }
        // Fetched once, and kept on disk for the next start.
        #expect(try rig.jwksFetches() == 1)
        #expect(FileManager.default.fileExists(atPath: rig.cacheFile("ideogram")))

        let client = try LookupClient(port: daemon.port, token: rig.apiToken)
        let lookup = try client.send("GET", "/v1/predictions/ideogram/\(id)")
        #expect(lookup.status == 200)
        let assets = try client.json(lookup)["assets"] as? [[String: Any]] ?? []
        #expect(assets.count == 2 && assets.allSatisfy { $0["state"] as? String == "stored" && $0["url"] is String })
        #expect(try client.send("GET", "/v1/predictions/ideogram/\(id)/outputs/1").status == 302)
        try client.validateCaptured()
        #expect(try daemon.stop() == 0)
    }

    @Test func forgedStaleOrIncompleteDeliveriesAre401AndWriteNothing() throws {
        let rig = try SignedProviderRig()
        try rig.publish(["k1"])
        let daemon = try rig.startDaemon()
        let body = ideogramBody(rig, id: "forged1", files: ["forged1.png"])
        let tampered = try rig.post(.ideogram, body, id: "forged1", to: daemon, tamper: true)
        #expect(tampered.status == 401, "\(SignedProviderRig.text(tampered))")
        // Signed with a key the set does not hold, naming one it does.
        let wrongKey = try rig.post(.ideogram, body, id: "forged1", to: daemon, key: "intruder", sentKeyID: "k1")
        #expect(wrongKey.status == 401, "\(SignedProviderRig.text(wrongKey))")
        let stale = try rig.post(.ideogram, body, id: "forged1", to: daemon, timestamp: Int64(Date().timeIntervalSince1970) - 400)
        #expect(stale.status == 401)
        #expect(rig.harness.fake.port > 0)
        let missing = try rig.post(.ideogram, body, id: "forged1", to: daemon, omit: "X-Ideogram-Webhook-User-Id")
        #expect(missing.status == 401)
        let falBody = Array(#"{"request_id":"forged2","status":"OK","payload":{"images":[{"url":"\#(rig.fake.url("forged2.png"))"}]}}"#.utf8)
        #expect(try rig.post(.fal, falBody, id: "forged2", to: daemon, key: "intruder").status == 401)
        #expect(try rig.post(.fal, falBody, id: "forged2", to: daemon, tamper: true).status == 401)
        #expect(try count(rig, "deliveries") == 0)
        #expect(try count(rig, "predictions") == 0)
        // A refused signature makes the key set be fetched again, but at most once a minute.
        #expect(try rig.jwksFetches() <= 2)
        #expect(try daemon.stop() == 0)
    }

    /// The key cached on disk does not sign this delivery; the published set has gained its key: fetched
    /// again and accepted. A second unknown key within the minute is not fetched for: 503, retried later.
    @Test func aKeyIDTheCacheLacksIsFetchedOnce() throws {
        let rig = try SignedProviderRig()
        try FileManager.default.createDirectory(atPath: rig.harness.spoolDirectory + "/keys", withIntermediateDirectories: true)
        try Data(rig.jwks(["k1"])).write(to: URL(fileURLWithPath: rig.cacheFile("ideogram")))
        try rig.publish(["k1", "k2"])
        let daemon = try rig.startDaemon()
        let body = ideogramBody(rig, id: "rotated1", files: ["rotated1.png"])
        let answer = try rig.post(.ideogram, body, id: "rotated1", to: daemon, key: "k2")
        #expect(answer.status == 200, "\(SignedProviderRig.text(answer))")
        #expect(try rig.jwksFetches() == 1)
        let cached = try JSONWebKeySet.keys(from: Array(try Data(contentsOf: URL(fileURLWithPath: rig.cacheFile("ideogram")))))
        #expect(cached.compactMap(\.id).sorted() == ["k1", "k2"], "the disk copy follows the fetched set")

        try rig.publish(["k1", "k2", "k3"])
        let tooSoon = try rig.post(.ideogram, ideogramBody(rig, id: "rotated2", files: ["rotated2.png"]), id: "rotated2", to: daemon, key: "k3")
        #expect(tooSoon.status == 503, "\(SignedProviderRig.text(tooSoon))")
        let retryAfter = Int(tooSoon.headers["retry-after"] ?? "") ?? 0
        #expect((1...60).contains(retryAfter))
        #expect(try rig.jwksFetches() == 1)
        try rig.harness.waitForAssets("stored", count: 1)
        #expect(try daemon.stop() == 0)
    }

    @Test func anUnreachableKeySetIs503WithRetryAfterNot401() throws {
        let rig = try SignedProviderRig()
        let closed = "http://127.0.0.1:\(freePort())/jwks.json"
        let daemon = try rig.startDaemon(jwksURL: closed)
        let body = ideogramBody(rig, id: "nokeys1", files: ["nokeys1.png"])
        for _ in 0..<2 {
            let answer = try rig.post(.ideogram, body, id: "nokeys1", to: daemon)
            #expect(answer.status == 503, "\(SignedProviderRig.text(answer))")
            #expect(Int(answer.headers["retry-after"] ?? "").map { $0 >= 1 } == true)
        }
        let falBody = Array(#"{"request_id":"nokeys2","status":"OK","payload":{}}"#.utf8)
        #expect(try rig.post(.fal, falBody, id: "nokeys2", to: daemon).status == 503)
        #expect(try count(rig, "deliveries") == 0)
        #expect(try daemon.stop() == 0)

        // Keys pinned in the configuration need no fetch at all.
        let pinned = try rig.startDaemon(
            jwksURL: closed,
            extra: [
                "AFTERIMAGE_IDEOGRAM_PUBLIC_KEYS": SignedProviderRig.base64URL(rig.key("k1").publicKey.rawRepresentation)
            ])
        let accepted = try rig.post(.ideogram, body, id: "nokeys1", to: pinned)
        #expect(accepted.status == 200, "\(SignedProviderRig.text(accepted))")
        #expect(try rig.post(.ideogram, body, id: "nokeys1", to: pinned, key: "other").status == 401, "a pinned set is never fetched")
        #expect(try pinned.stop() == 0)
    }

    @Test func falArchivesEveryURLInThePayloadAndRecordsErrors() throws {
        let rig = try SignedProviderRig()
        try rig.publish(["k1"])
        let daemon = try rig.startDaemon()
        let id = "123e4567-e89b-12d3-a456-\(UUID().uuidString.suffix(12).lowercased())"
        let payload: [String: Any] = [
            "images": [["url": rig.fake.url("\(id)-img.png", "size=2000&type=image/png"), "content_type": "image/png", "width": 1024]],
            "video": ["url": rig.fake.url("\(id)-clip.mp4", "size=5000&type=video/mp4"), "file_name": "output.mp4"],
            "seed": 196_619_188_014_358_660, "prompt": "a cute dog",
        ]
        let body = Array(
            try JSONSerialization.data(
                withJSONObject: [
                    "request_id": id, "gateway_request_id": id, "status": "OK",
                    "payload": payload,
                ], options: [.sortedKeys]))
        let answer = try rig.post(.fal, body, id: id, to: daemon)
        #expect(answer.status == 200, "\(SignedProviderRig.text(answer))")
        #expect(SignedProviderRig.json(answer)["assets"] as? Int == 2)
        try rig.harness.waitForAssets("stored", count: 2)
        let stored = try rig.harness.storedAssets(predictionID: id)
        #expect(stored.map(\.pointer) == ["/images/0/url", "/video/url"])
        #expect(stored.map(\.key) == ["\(rig.harness.prefix)fal/\(id)/0.png", "\(rig.harness.prefix)fal/\(id)/1.mp4"])
        #expect(
            try rig.harness.scalar("SELECT count(*) FROM assets WHERE deadline IS NULL", as: Int.self) == 2,
            "fal files do not expire: no deadline without fal.retention")
        // fal retries each delivery, signed afresh: one prediction, nothing fetched twice.
        #expect(SignedProviderRig.json(try rig.post(.fal, body, id: id, to: daemon))["status"] as? String == "duplicate")
        #expect(try rig.fake.count("\(id)-img.png") == 1)

        let failedID = "0c9d8e7f-\(UUID().uuidString.prefix(8).lowercased())"
        let error = Array(
            try JSONSerialization.data(
                withJSONObject: [
                    "request_id": failedID, "gateway_request_id": failedID, "status": "ERROR", "error": "Invalid status code: 422",
                    "payload": [
                        "detail": [["loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"]],
                        "input_image": rig.fake.url("never-fetched.png"),
                    ],
                ], options: [.sortedKeys]))
        let recorded = try rig.post(.fal, error, id: failedID, to: daemon)
        #expect(recorded.status == 200, "\(SignedProviderRig.text(recorded))")
        #expect(SignedProviderRig.json(recorded)["assets"] as? Int == 0)
        #expect(
            try rig.harness.scalar(
                "SELECT status || ': ' || error FROM predictions WHERE provider = 'fal' AND id = $1", [failedID],
                as: String.self) == "failed: Invalid status code: 422")
        #expect(try rig.harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [failedID], as: Int.self) == 0)

        let client = try LookupClient(port: daemon.port, token: rig.apiToken)
        let lookup = try client.json(try client.send("GET", "/v1/predictions/fal/\(id)"))
        #expect((lookup["assets"] as? [[String: Any]])?.count == 2)
        #expect(try client.json(try client.send("GET", "/v1/predictions/fal/\(failedID)"))["status"] as? String == "failed")
        try client.validateCaptured()
        #expect(try rig.fake.count("never-fetched.png") == 0)
        #expect(try daemon.stop() == 0)
    }
}
