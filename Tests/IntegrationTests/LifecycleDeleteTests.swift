import Crypto
import Curl
import Foundation
import PQ
import Primitives
import S3
import TestSupport
import Testing

/// Issue 19, delete on demand, end to end: the real daemon and `afterimage delete`, real PostgreSQL and
/// SeaweedFS, the fake provider serving a slow file.
@Suite("Lifecycle: delete on demand", .serialized)
struct LifecycleDeleteTests {
    let readToken = randomToken()
    let adminToken = randomToken()

    func startDaemon(_ harness: ArchiveHarness, extra: [String: String] = [:]) throws -> DaemonProcess {
        try harness.startDaemon(
            extra: [
                "AFTERIMAGE_API_TOKENS": readToken, "AFTERIMAGE_API_ADMIN_TOKENS": adminToken,
                "AFTERIMAGE_API_LOOKUP_CACHE_SECONDS": "30",
            ].merging(extra) { $1 })
    }

    func keys(_ harness: ArchiveHarness, predictionID: String) throws -> [String] {
        try harness.storage().allKeys(prefix: "\(harness.prefix)replicate/\(predictionID)/")
    }

    @Test("a delete while a slow download is in flight: tombstone, 410s, no object left, a repeated webhook downloads nothing")
    func deleteWhileDownloading() throws {
        let harness = try ArchiveHarness()
        let daemon = try startDaemon(harness)
        let id = "del\(UUID().uuidString.prefix(8).lowercased())"
        let fast = "\(id)-fast.png"
        let slow = "\(id)-slow.png"
        // 2 MB at 100 kB/s: twenty seconds, far longer than the delete takes.
        let body = harness.prediction(
            id: id,
            output: [
                harness.fake.url(fast, "size=3000&type=image/png"),
                harness.fake.url(slow, "size=2000000&type=image/png&rate=100000"),
            ])
        #expect(try harness.post(body, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 1)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the slow download under way") {
            try harness.fake.stats().active["/files/\(slow)"] ?? 0 > 0
        }
        #expect(try keys(harness, predictionID: id).count == 1)
        let reader = try LookupClient(port: daemon.port, token: readToken)
        // Cached once settled? Not yet: one output is in flight. Look it up so a later 410 is not a cache miss by luck.
        #expect(try reader.send("GET", "/v1/predictions/replicate/\(id)").status == 200)

        #expect(try reader.send("DELETE", "/v1/predictions/replicate/\(id)", authorization: "").status == 401)
        let readOnly = try reader.send("DELETE", "/v1/predictions/replicate/\(id)")
        #expect(readOnly.status == 403)
        #expect(reader.errorCode(readOnly) == "token_not_permitted")
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1 AND state = 'deleted'", [id], as: Int.self) == 0)

        let deleted = try reader.send("DELETE", "/v1/predictions/replicate/\(id)", authorization: "Bearer \(adminToken)")
        #expect(deleted.status == 200, "\(String(decoding: deleted.body, as: UTF8.self))")
        let answer = try reader.json(deleted)
        #expect(answer["status"] as? String == "deleted")
        #expect(answer["assets"] as? Int == 2)
        #expect(answer["objects_removed"] as? Int == 1)
        #expect(answer["purge_pending"] as? Bool == true)  // a transfer was fenced: purged again later

        // The worker notices (its lease renewal fails), drops the transfer and cleans up after itself.
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the fenced transfer to end") {
            let active = try harness.fake.stats().active["/files/\(slow)"] ?? 0
            return daemon.log.contains("deleted while in flight") && active == 0
        }
        #expect(try keys(harness, predictionID: id).isEmpty)
        #expect(try harness.storage().listMultipartUploads(prefix: "\(harness.prefix)replicate/\(id)/").isEmpty)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1 AND state <> 'deleted'", [id], as: Int.self) == 0)
        // The tombstone: sizes and hashes kept, input and output and bodies cleared.
        let stored = FakeProvider.bytes(fast, size: 3000)
        #expect(
            try harness.scalar("SELECT sha256 FROM assets WHERE prediction_id = $1 AND output_index = 0", [id], as: String.self)
                == FakeProvider.sha256Hex(stored))
        #expect(
            try harness.scalar(
                "SELECT deleted_at IS NOT NULL AND input IS NULL AND output IS NULL FROM predictions WHERE id = $1",
                [id], as: Bool.self))
        #expect(
            try harness.scalar(
                "SELECT count(*) FROM deliveries WHERE prediction_id = $1 AND octet_length(body) = 0 AND body_sha256 = $2",
                [id, FakeProvider.sha256Hex(body)], as: Int.self) == 1)
        let files = try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory).filter { !$0.hasPrefix("keys") }
        #expect(files.isEmpty, "spool files left: \(files)")

        // Lookups: 410 deleted, for the prediction and for each output.
        let gone = try reader.send("GET", "/v1/predictions/replicate/\(id)")
        #expect(gone.status == 410)
        #expect(reader.errorCode(gone) == "deleted")
        let output = try reader.send("GET", "/v1/predictions/replicate/\(id)/outputs/0")
        #expect(output.status == 410)
        #expect(reader.errorCode(output) == "deleted")
        #expect(try reader.send("GET", "/v1/assets?state=deleted").status == 200)

        // The webhook again (Replicate retries; a reconcile pass): recorded, nothing fetched, body not kept.
        let fastDownloads = try harness.fake.count(fast)
        let again = try harness.post(body, to: daemon)
        #expect(again.status == 200)
        #expect(try harness.scalar("SELECT count(*) FROM deliveries WHERE prediction_id = $1", [id], as: Int.self) == 2)
        #expect(try harness.scalar("SELECT count(*) FROM deliveries WHERE prediction_id = $1 AND octet_length(body) > 0", [id], as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [id], as: Int.self) == 2)
        #expect(try harness.scalar("SELECT input IS NULL FROM predictions WHERE id = $1", [id], as: Bool.self))
        // A new output in a later delivery would be queued as pending: there is none, and nothing is downloaded.
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE state IN ('pending', 'in_flight')", as: Int.self) == 0)
        #expect(try harness.fake.count(fast) == fastDownloads)
        #expect(try keys(harness, predictionID: id).isEmpty)

        // A second delete has nothing to do; an unknown prediction is 404.
        // (The README's example, as written.)
        let curl = try ReadmeSnippet.block("delete-curl")
            .replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(daemon.port)")
            .replacingOccurrences(of: "PREDICTION_ID", with: id)
        let (curlStatus, curlOutput) = try runProcess(
            "/bin/sh", ["-c", curl],
            environment: [
                "AFTERIMAGE_ADMIN_TOKEN": adminToken, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            ])
        #expect(curlStatus == 0)
        let repeated = try JSONSerialization.jsonObject(with: Data(curlOutput.utf8)) as? [String: Any]
        #expect(repeated?["status"] as? String == "already_deleted", "\(curlOutput)")
        #expect(try reader.send("DELETE", "/v1/predictions/replicate/nosuch\(id)", authorization: "Bearer \(adminToken)").status == 404)
        try reader.validateCaptured()
        #expect(try daemon.stop() == 0)
        #expect(!daemon.log.contains(adminToken) && !daemon.log.contains(readToken))
    }

    struct GateStats: Decodable {
        let held: Int
        /// The upstream's status for each held upload once let through.
        let forwarded: [Int]
    }

    func gateStats(_ gate: PythonFake) throws -> GateStats {
        try JSONDecoder().decode(GateStats.self, from: Data(try httpCall("GET", port: gate.port, path: "/_gate/stats")))
    }

    func httpCall(_ method: String, port: Int, path: String) throws -> [UInt8] {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(5)
        let response = try CurlSession().perform(
            CurlRequest(method: method, url: "http://127.0.0.1:\(port)\(path)", headers: [], body: method == "POST" ? .bytes([]) : .none),
            options: options)
        #expect(response.status == 200)
        return response.body
    }

    @Test("a delete while an upload is in flight: recording it is fenced, and the worker removes the object it just uploaded")
    func deleteWhileUploading() throws {
        let id = "upl\(UUID().uuidString.prefix(8).lowercased())"
        // The daemon's bucket is SeaweedFS behind a proxy that holds this prediction's uploads until the test opens it.
        let direct = try TestEnvironment.s3()
        let upstream = try #require(URL(string: direct.endpoint)?.port)
        let gate = try PythonFake(script: "s3_gate_proxy.py", arguments: [String(upstream), "/\(id)/"])
        var proxied = direct
        proxied.endpoint = "http://127.0.0.1:\(gate.port)"
        let harness = try ArchiveHarness(s3: proxied)
        // A long lease: its renewal (every 40 s) does not find the delete first, so the fence is met when the
        // worker records the upload, after the object is in the bucket.
        let daemon = try startDaemon(harness, extra: ["AFTERIMAGE_WORKERS_LEASE_SECONDS": "120"])
        let bucket = S3Client(
            endpoint: try S3Endpoint(endpoint: direct.endpoint, region: direct.region, bucket: direct.bucket, pathStyle: true),
            credentials: S3Credentials(accessKeyID: direct.accessKeyID, secretAccessKey: direct.secretAccessKey, sessionToken: nil))
        let prefix = "\(harness.prefix)replicate/\(id)/"

        let body = harness.prediction(id: id, output: [harness.fake.url("\(id).png", "size=3000&type=image/png")])
        #expect(try harness.post(body, to: daemon).status == 200)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the upload held at the proxy") { try gateStats(gate).held == 1 }
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [id], as: String.self) == "in_flight")

        let reader = try LookupClient(port: daemon.port, token: readToken)
        let deleted = try reader.send("DELETE", "/v1/predictions/replicate/\(id)", authorization: "Bearer \(adminToken)")
        #expect(deleted.status == 200, "\(String(decoding: deleted.body, as: UTF8.self))")
        let answer = try reader.json(deleted)
        #expect(answer["objects_removed"] as? Int == 0)
        #expect(answer["purge_pending"] as? Bool == true)
        #expect(try bucket.allKeys(prefix: prefix).isEmpty)

        // The upload goes through now, after the delete's purge: only the worker can remove what it stores.
        _ = try httpCall("POST", port: gate.port, path: "/_gate/open")
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the fenced worker to clean up") {
            daemon.log.contains("deleted while in flight; the transfer is dropped and what it stored removed")
        }
        let forwarded = try gateStats(gate).forwarded
        #expect(forwarded == [200], "the upload did not reach the bucket: \(forwarded)")
        #expect(try bucket.allKeys(prefix: prefix).isEmpty, "the object uploaded after the delete is still there")
        #expect(try bucket.listMultipartUploads(prefix: prefix).isEmpty)
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1", [id], as: String.self) == "deleted")
        // Not the delete's second purge: that is due only after two leases.
        #expect(
            try harness.scalar(
                "SELECT purge_due_at > now() + interval '1 minute' FROM predictions WHERE id = $1", [id], as: Bool.self))
        #expect(!daemon.log.contains("stored, but the lease was lost before recording"))
        #expect(try daemon.stop() == 0)
    }

    @Test("afterimage delete: the command removes every object of the prediction, multipart leftovers included")
    func deleteCommand() throws {
        let harness = try ArchiveHarness()
        let daemon = try startDaemon(harness)
        let id = "cli\(UUID().uuidString.prefix(8).lowercased())"
        let body = harness.prediction(
            id: id,
            output: [
                harness.fake.url("\(id)-a.png", "size=4000&type=image/png"),
                harness.fake.url("\(id)-b.png", "size=5000&type=image/png"),
            ])
        #expect(try harness.post(body, to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 2)
        // A stray object and an upload that was never completed under the prediction's prefix.
        let storage = try harness.storage()
        let prefix = "\(harness.prefix)replicate/\(id)/"
        try storage.putObject(key: prefix + "stray.bin", body: .bytes([1, 2, 3]), contentType: nil)
        let upload = try storage.createMultipartUpload(key: prefix + "9.png", contentType: "image/png")
        #expect(try storage.listMultipartUploads(prefix: prefix).contains { $0.uploadId == upload })
        #expect(try keys(harness, predictionID: id).count == 3)
        #expect(try daemon.stop() == 0)

        let environment = harness.environment(port: freePort())
        let (status, out, err) = try runAfterimage(["delete", "replicate", id], environment: environment)
        #expect(status == 0, "\(err)")
        #expect(out.contains("2 outputs marked deleted, 3 objects removed, 1 uploads aborted, 1 raw bodies cleared"), "\(out)")
        #expect(try keys(harness, predictionID: id).isEmpty)
        #expect(try storage.listMultipartUploads(prefix: prefix).isEmpty)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1 AND state = 'deleted'", [id], as: Int.self) == 2)
        let (again, againOut, _) = try runAfterimage(["delete", "replicate", id], environment: environment)
        #expect(again == 0 && againOut.contains("was deleted already"))
        let (unknown, _, unknownErr) = try runAfterimage(["delete", "replicate", "nosuch"], environment: environment)
        #expect(unknown == 1 && unknownErr.contains("no prediction replicate/nosuch"))
    }
}
