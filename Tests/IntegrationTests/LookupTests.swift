import Crypto
import Curl
import Foundation
import PQ
import Primitives
import TestSupport
import Testing

@testable import Afterimage

/// Issue 4 end to end: the real daemon answers lookups with presigned URLs that SeaweedFS honours, refuses
/// what it must, and every response matches openapi.yaml.
@Suite("Lookup: presigned URLs for archived outputs", .serialized)
struct LookupTests {
    /// A daemon with one plain token; `workers: 0` keeps seeded pending rows where they are.
    func start(_ harness: ArchiveHarness, token: String, workers: Int? = nil, cacheSeconds: Int? = nil) throws -> (DaemonProcess, LookupClient) {
        var extra = ["AFTERIMAGE_API_TOKENS": token]
        if let workers { extra["AFTERIMAGE_WORKERS_COUNT"] = String(workers) }
        if let cacheSeconds { extra["AFTERIMAGE_API_LOOKUP_CACHE_SECONDS"] = String(cacheSeconds) }
        let daemon = try harness.startDaemon(extra: extra)
        return (daemon, try LookupClient(port: daemon.port, token: token))
    }

    func assets(_ object: [String: Any]) -> [[String: Any]] { object["assets"] as? [[String: Any]] ?? [] }

    @Test func storedOutputsArePresignedAndTheBucketServesTheSourceBytes() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token)
        let id = "lk\(UUID().uuidString.prefix(8).lowercased())"
        let names = ["\(id)-a.png", "\(id)-b.png"]
        let sizes = [70_000, 1234]
        let output = zip(names, sizes).map { harness.fake.url($0, "size=\($1)&type=image/png") }
        #expect(try harness.post(harness.prediction(id: id, output: output), to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 2)

        let answer = try client.send("GET", "/v1/predictions/replicate/\(id)")
        #expect(answer.status == 200)
        #expect(answer.headers["cache-control"] == "no-store")
        let prediction = try client.json(answer)
        #expect(prediction["status"] as? String == "succeeded")
        #expect(prediction["model"] as? String == "test/model")
        #expect((prediction["input"] as? [String: Any])?["prompt"] as? String == "a cat")
        let listed = assets(prediction)
        #expect(listed.count == 2)
        for (index, asset) in listed.enumerated() {
            let expected = FakeProvider.bytes(names[index], size: sizes[index])
            #expect(asset["index"] as? Int == index)
            #expect(asset["state"] as? String == "stored")
            #expect(asset["size"] as? Int == sizes[index])
            #expect(asset["sha256"] as? String == FakeProvider.sha256Hex(expected))
            #expect(asset["content_type"] as? String == "image/png")
            let url = try #require(asset["url"] as? String)
            #expect(url.hasPrefix(harness.s3.endpoint + "/" + harness.s3.bucket + "/"))
            #expect(url.contains("X-Amz-Expires=3600"))
            #expect(asset["url_expires_at"] is String)
            let fetched = try LookupClient.fetch(url)
            #expect(fetched.status == 200)
            #expect(fetched.body == expected, "bytes behind the presigned URL of output \(index) differ from the source")
        }

        // outputs/{n}: a 302 to a URL that works, with the requested lifetime and download name.
        let redirect = try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/1?download=\(pathSegment("cat picture ü.png"))")
        #expect(redirect.status == 302)
        let location = try #require(redirect.headers["location"])
        #expect(location.contains("response-content-disposition=attachment"))
        let downloaded = try LookupClient.fetch(location)
        #expect(downloaded.status == 200)
        #expect(downloaded.body == FakeProvider.bytes(names[1], size: sizes[1]))
        #expect(
            downloaded.headers["content-disposition"]?.contains("cat picture") == true,
            "SeaweedFS did not apply response-content-disposition: \(downloaded.headers)")
        #expect(try client.json(redirect)["url"] as? String == location)
        let capped = try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/0?expires=99999999")
        #expect(try #require(capped.headers["location"]).contains("X-Amz-Expires=604800"))

        // One character of the signature changed: the bucket refuses it.
        let good = try #require(try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/0").headers["location"])
        let signature = try #require(good.range(of: "X-Amz-Signature="))
        var tampered = good
        let position = signature.upperBound
        tampered.replaceSubrange(position...position, with: good[position] == "0" ? "1" : "0")
        #expect(tampered != good)
        #expect(try LookupClient.fetch(tampered).status == 403)
        #expect(try LookupClient.fetch(good).status == 200)

        // A short-lived URL works, then stops working once it has expired.
        let brief = try #require(try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/0?expires=2").headers["location"])
        #expect(try LookupClient.fetch(brief).status == 200)
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(250), "the 2-second URL to be refused") {
            try LookupClient.fetch(brief).status == 403
        }

        // The command line prints the same kind of URLs, read from the database and signed locally.
        let environment = harness.environment(port: freePort())
        let (status, out, err) = try runAfterimage(["presign", "replicate", id], environment: environment)
        #expect(status == 0, "\(err)")
        let urls = out.split(separator: "\n").map(String.init)
        #expect(urls.count == 2)
        for (index, url) in urls.enumerated() {
            #expect(try LookupClient.fetch(url).body == FakeProvider.bytes(names[index], size: sizes[index]))
        }
        let (one, single, _) = try runAfterimage(["presign", "replicate", id, "--output", "1", "--expires", "60"], environment: environment)
        #expect(one == 0)
        #expect(single.contains("X-Amz-Expires=60"))
        #expect(try LookupClient.fetch(single.trimmingCharacters(in: .whitespacesAndNewlines)).body == FakeProvider.bytes(names[1], size: sizes[1]))
        let (unknown, _, unknownErr) = try runAfterimage(["presign", "replicate", "nope-\(id)"], environment: environment)
        #expect(unknown == 1)
        #expect(unknownErr.contains("no prediction"))

        try client.validateCaptured()
        try daemon.stop()
    }

    /// Keys with spaces, unicode, `+`, `=` and `/` (in the prefix, the prediction id and the file name) are
    /// encoded by S3's rules, so the bucket finds the object behind each URL.
    @Test func awkwardKeysRoundTrip() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token, workers: 0)
        let storage = try harness.storage()
        let id = "awk ward+id=ü/\(UUID().uuidString.prefix(6))"
        try harness.seedPrediction(id)
        let keys = [
            "\(harness.prefix)sp ace+plus=eq/ünïcødé 日本/\(id)/0 a+b=c.png",
            "\(harness.prefix)replicate/\(id)/1~tilde%percent&amp;.png",
            "\(harness.prefix)replicate/\(id)//double-slash 2.png",
        ]
        var contents: [[UInt8]] = []
        for (index, key) in keys.enumerated() {
            let bytes = Array("object \(index) behind \(key)".utf8) + (0..<1000).map { UInt8(($0 * 7 + index) % 256) }
            try storage.putObject(key: key, body: .bytes(bytes), contentType: "image/png")
            try harness.seedAsset(
                predictionID: id, index: index,
                .init(
                    key: key, size: Int64(bytes.count),
                    sha256: FakeProvider.sha256Hex(bytes)))
            contents.append(bytes)
        }
        let answer = try client.send("GET", "/v1/predictions/replicate/\(pathSegment(id))")
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        let listed = assets(try client.json(answer))
        #expect(listed.count == keys.count)
        for (index, asset) in listed.enumerated() {
            #expect(asset["key"] as? String == keys[index])
            let url = try #require(asset["url"] as? String)
            let fetched = try LookupClient.fetch(url)
            #expect(fetched.status == 200, "\(keys[index]): \(String(decoding: fetched.body, as: UTF8.self))")
            #expect(fetched.body == contents[index], "\(keys[index]) did not round-trip")
            let redirect = try client.send("GET", "/v1/predictions/replicate/\(pathSegment(id))/outputs/\(index)")
            #expect(try LookupClient.fetch(try #require(redirect.headers["location"])).body == contents[index])
        }
        try client.validateCaptured()
        try daemon.stop()
    }

    @Test func listingPagesStayStableWhileAssetsAreInserted() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token, workers: 0)
        let id = "pg\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        try harness.seedPrediction(id, provider: "stability")
        var seeded: [Int64] = []
        for index in 0..<25 {
            seeded.append(
                try harness.seedAsset(
                    predictionID: id, index: index,
                    .init(
                        state: index % 5 == 0 ? "failed" : "stored",
                        key: index % 5 == 0 ? nil : "k/\(index)",
                        failureReason: index % 5 == 0 ? "gone" : nil)))
        }
        var seen: [Int64] = []
        var after: Int64? = 0
        var pages = 0
        var inserted: [Int64] = []
        while let cursor = after, pages < 20 {
            let page = try client.json(try client.send("GET", "/v1/assets?limit=10&after=\(cursor)"))
            seen += assets(page).compactMap { ($0["id"] as? Int).map(Int64.init) }
            after = (page["next_after"] as? Int).map(Int64.init)
            pages += 1
            if pages == 1 {
                // Rows arriving mid-listing land after the cursor: no page shifts, nothing repeats.
                for index in 25..<32 { inserted.append(try harness.seedAsset(predictionID: id, index: index, .init(key: "k/\(index)"))) }
            }
        }
        #expect(pages == 4)
        #expect(seen == seeded + inserted, "ids out of order, repeated or missing")
        #expect(Set(seen).count == seen.count)

        let failed = try client.json(try client.send("GET", "/v1/assets?state=failed"))
        #expect(assets(failed).count == 5)
        #expect(assets(failed).allSatisfy { $0["state"] as? String == "failed" && $0["failure_reason"] as? String == "gone" })
        #expect(failed["next_after"] is NSNull)
        let stability = try harness.seedAsset(predictionID: id, index: 0, provider: "stability", .init(state: "pending"))
        let byProvider = try client.json(try client.send("GET", "/v1/assets?provider=stability&state=pending"))
        #expect(assets(byProvider).compactMap { $0["id"] as? Int } == [Int(stability)])

        // The command line lists the same rows.
        let (status, out, _) = try runAfterimage(["assets", "list", "--state", "failed"], environment: harness.environment(port: freePort()))
        #expect(status == 0)
        #expect(out.split(separator: "\n").count == 5)
        #expect(out.split(separator: "\n").allSatisfy { $0.contains("\tfailed\t") && $0.hasSuffix("\tgone") })

        try client.validateCaptured()
        try daemon.stop()
    }

    /// A failed asset whose spool file is gone is re-queued, downloaded again, stored, and then served.
    @Test func retryOfAFailedAssetThenSucceeds() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        // A long cache lifetime: only invalidation can make the retries visible in the lookups below.
        let (daemon, client) = try start(harness, token: token, cacheSeconds: 300)
        let id = "rt\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        let names = ["\(id)-0.png", "\(id)-1.png"]
        let first = try harness.seedAsset(
            predictionID: id, index: 0,
            .init(
                state: "failed", key: nil, sourceURL: harness.fake.url(names[0], "size=5000&type=image/png"),
                failureReason: "the source answered 500 25 times", spoolPath: harness.spoolDirectory + "/gone-\(UUID())", spoolSize: 5000))
        let second = try harness.seedAsset(
            predictionID: id, index: 1,
            .init(
                state: "expired", key: nil, sourceURL: harness.fake.url(names[1], "size=777&type=image/png"), failureReason: "gave up"))
        #expect(try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/0").status == 410)
        // Settled (terminal, every asset failed or expired): this answer is now kept in memory.
        func states() throws -> [String?] {
            assets(try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))).map { $0["state"] as? String }
        }
        #expect(try states() == ["failed", "expired"])

        // The command line, another process, re-queues the second: its NOTIFY reaches the daemon's cache.
        let environment = harness.environment(port: freePort())
        let (status, out, err) = try runAfterimage(["assets", "retry", String(second)], environment: environment)
        #expect(status == 0, "\(err)")
        #expect(out.contains("pending again"))
        try waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(50), "the retry from another process to reach the lookup cache") {
            try states().last != "expired"
        }

        // Once the second is stored the prediction is settled again, and cached; the API re-queues the
        // first, and this daemon's own retry shows at once.
        try harness.waitForAssets("stored", count: 1)
        #expect(try states() == ["failed", "stored"])
        let retried = try client.send("POST", "/v1/assets/\(first)/retry")
        #expect(retried.status == 200, "\(String(decoding: retried.body, as: UTF8.self))")
        let asset = try client.json(retried)
        #expect(asset["state"] as? String == "pending")
        #expect(asset["attempts"] as? Int == 0)
        #expect(asset["failure_reason"] is NSNull)
        #expect(try states().first != "failed", "the retry must not be hidden by the lookup cache")
        try harness.waitForAssets("stored", count: 2)

        for (index, name) in names.enumerated() {
            let redirect = try client.send("GET", "/v1/predictions/replicate/\(id)/outputs/\(index)")
            #expect(redirect.status == 302)
            let fetched = try LookupClient.fetch(try #require(redirect.headers["location"]))
            #expect(fetched.body == FakeProvider.bytes(name, size: index == 0 ? 5000 : 777))
            #expect(try harness.fake.count(name) == 1, "\(name) should be downloaded exactly once")
        }

        let stored = try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))
        #expect(assets(stored).map { $0["state"] as? String } == ["stored", "stored"])

        let again = try client.send("POST", "/v1/assets/\(first)/retry")
        #expect(again.status == 409)
        #expect(client.errorCode(again) == "asset_not_retryable")
        let (missing, _, missingErr) = try runAfterimage(["assets", "retry", "99999999"], environment: environment)
        #expect(missing == 1)
        #expect(missingErr.contains("no asset"))

        try client.validateCaptured()
        try daemon.stop()
    }

    /// A settled prediction is answered from memory: a change nobody announces (here a direct SQL update)
    /// is not seen at once, but within `api.lookup_cache_seconds`; a webhook recorded by this daemon is
    /// seen at once. Presigned URLs stay fresh for every answer.
    @Test func settledLookupsComeFromMemoryForABoundedTime() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token, workers: 0, cacheSeconds: 2)
        let id = "mc\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        _ = try harness.seedAsset(
            predictionID: id, index: 0,
            .init(
                state: "stored", key: "cache/\(id).png",
                sourceURL: harness.fake.url("\(id).png", "size=10")))
        let first = try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))
        #expect(first["model"] as? String != "changed-behind-its-back")

        let connection = try harness.connection()
        defer { connection.close() }
        try connection.execute("UPDATE predictions SET model = 'changed-behind-its-back' WHERE id = $1", [id])
        let cached = try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)?expires=77"))
        #expect(cached["model"] as? String == first["model"] as? String, "a settled prediction should come from memory")
        let url = try #require(assets(cached).first?["url"] as? String)
        #expect(url.contains("X-Amz-Expires=77"), "presigned URLs are signed per answer, never cached")

        var seen: String?
        try waitUntil(timeout: .seconds(15), pollEvery: .milliseconds(100), "the direct change to show once the entry's lifetime is over") {
            seen = try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))["model"] as? String
            return seen == "changed-behind-its-back"
        }

        // A pending asset is never cached: the queue's progress shows at once.
        let other = "mp\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(other)
        let pending = try harness.seedAsset(
            predictionID: other, index: 0,
            .init(
                state: "pending", key: nil,
                sourceURL: harness.fake.url("\(other).png", "size=10")))
        #expect(assets(try client.json(try client.send("GET", "/v1/predictions/replicate/\(other)"))).first?["state"] as? String == "pending")
        try connection.execute("UPDATE assets SET state = 'stored', storage_key = 'k/x.png' WHERE id = $1", [pending])
        #expect(assets(try client.json(try client.send("GET", "/v1/predictions/replicate/\(other)"))).first?["state"] as? String == "stored")

        // A webhook recorded by this daemon fills in a field of a cached prediction: seen at once.
        let late = "ml\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(late)
        #expect(try client.json(try client.send("GET", "/v1/predictions/replicate/\(late)"))["started_at"] is NSNull)
        let body = Array(#"{"id":"\#(late)","status":"succeeded","started_at":"2026-11-21T09:59:59.000Z","output":null}"#.utf8)
        #expect(try harness.post(body, to: daemon).status == 200)
        #expect(try client.json(try client.send("GET", "/v1/predictions/replicate/\(late)"))["started_at"] as? String == "2026-11-21T09:59:59.000Z")
        try client.validateCaptured()
        try daemon.stop()
    }

    /// Another instance (here: the intake code on its own connection) records new assets for a prediction
    /// this daemon has cached as settled: its NOTIFY reaches the cache long before the entry's lifetime ends.
    @Test func newAssetsRecordedElsewhereReachTheCache() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token, workers: 0, cacheSeconds: 300)
        let id = "na\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)  // succeeded, no output yet: settled with no assets
        func assetCount() throws -> Int {
            assets(try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))).count
        }
        #expect(try assetCount() == 0)
        let connection = try harness.connection()
        defer { connection.close() }
        let body = Array(#"{"id":"\#(id)","status":"succeeded","output":["https://replicate.delivery/x/\#(id).png"]}"#.utf8)
        let outcome = try ReplicateIntake(retentionSeconds: 3600).record(
            .init(provider: .replicate, deliveryID: "msg_\(id)", timestamp: Date(), body: body), on: connection)
        #expect(outcome == .accepted(predictionID: id, assets: 1))
        try waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(50), "the other instance's new asset to show") {
            try assetCount() == 1
        }
        try daemon.stop()
    }

    @Test func tokensAreRequiredAndNeverLogged() throws {
        let harness = try ArchiveHarness()
        let plain = randomToken()
        let hashedOnly = randomToken()
        let digest = Hex.encode(SHA256.hash(data: Array(hashedOnly.utf8)))
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": "\(plain), sha256:\(digest)"])
        let client = try LookupClient(port: daemon.port, token: plain)
        let id = "tk\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        let path = "/v1/predictions/replicate/\(id)"

        // The refusals route by route are LookupRouteTests' (in-process); here, that the daemon's own
        // configuration (plain and sha256: entries) reaches the routes, and that no token is ever logged.
        #expect(try client.send("GET", path).status == 200)
        #expect(try client.send("GET", path, authorization: "Bearer \(hashedOnly)").status == 200)
        let refused = try client.send("GET", path, authorization: "Bearer \(plain)x")
        #expect(refused.status == 401)
        #expect(client.errorCode(refused) == "token_invalid")
        #expect(try client.send("GET", path, authorization: "Bearer \(digest)").status == 401)
        // Webhook routes take no tokens.
        let webhook = try client.send(
            "POST", "/v1/webhooks/replicate", headers: [("Content-Type", "application/json")],
            body: Array(harness.prediction(id: id, output: nil)))
        #expect(webhook.status == 401)
        #expect(try harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 0)
        let signed = try harness.post(harness.prediction(id: "\(id)-w", output: nil), to: daemon)
        #expect(signed.status == 200)
        #expect(try client.send("GET", "/healthz", authorization: "").status == 200)
        #expect(try client.send("GET", "/readyz", authorization: "").status == 200)

        try daemon.stop()
        let log = daemon.log
        #expect(!log.isEmpty)
        for secret in [plain, hashedOnly, digest] { #expect(!log.contains(secret), "a token appears in the daemon log") }

        // No api.tokens at all: the lookup API is closed, whatever is presented.
        let closed = try harness.startDaemon()
        let anyone = try LookupClient(port: closed.port, token: plain)
        #expect(try anyone.send("GET", path).status == 401)
        #expect(try anyone.send("GET", path, authorization: "").status == 401)
        #expect(try anyone.send("GET", "/v1/assets", authorization: "Bearer ").status == 401)
        try closed.stop()
        #expect(closed.log.contains("api.tokens is empty"))

        try client.validateCaptured()
        try anyone.validateCaptured()
    }
}
