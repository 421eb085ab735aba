import Crypto
import Curl
import Foundation
import PQ
import Primitives
import TestSupport
import Testing

@testable import Afterimage

/// Issue 12, Replicate: what Replicate really sends, end to end through the real daemon, PostgreSQL,
/// SeaweedFS and the fake provider.
@Suite("Replicate: real formats end to end", .serialized)
struct ReplicateRealFormatsTests {
    func fixture(_ name: String) throws -> String {
        try String(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent("replicate/\(name)"), encoding: .utf8)
    }

    static func sha256(_ bytes: [UInt8]) -> String { Hex.encode(SHA256.hash(data: bytes)) }

    static func json(_ response: CurlResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    /// The real-shaped bodies, posted byte for byte as Replicate would (only their output URLs pointed at
    /// the fake provider): accepted, every field kept, outputs archived; `aborted` recorded and looked up as
    /// such with nothing fetched.
    @Test func realShapedWebhooksAreKeptAndArchived() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token])
        var real = try fixture("real-shaped-succeeded.json")
        real = real.replacingOccurrences(
            of: "https://replicate.delivery/xezq/Ap5zAUz9bKxq0MNF2wTfe3LqH7rvYcJk/tmp5v_v9dtm.png",
            with: harness.fake.url("real-0.png", "size=5000&type=image/png"))
        var deployed = try fixture("real-shaped-deployment-succeeded.json")
        deployed =
            deployed
            .replacingOccurrences(
                of: "https://replicate.delivery/yhqm/kA2b7vVZcQzK9eN1aXs0Q4JtR3fWmLpYd6UoGhBiTn8/out-0.png",
                with: harness.fake.url("dep-0.png", "size=6000&type=image/png")
            )
            .replacingOccurrences(
                of: "https://pbxt.replicate.delivery/Xq3LrWk9cTz2bVnHfJ8sYdPe4MuA6oGiR1tCwNyQ5Ex/out-1.png",
                with: harness.fake.url("dep-1.png", "size=7000&type=image/png"))
        let aborted = try fixture("real-shaped-aborted.json")
        for (body, id, assets) in [
            (real, "gm3qorzdhgbfurvjtvhg6dckhu", 1), (deployed, "b5v1c8e0xnrma0cq2y3sfj6z2r", 2),
            (aborted, "7d8qw1kv3hrme0cq2x9bn5yt4m", 0),
        ] {
            let answer = try harness.post(Array(body.utf8), to: daemon, webhookID: "msg_\(id)")
            #expect(answer.status == 200, "\(id): \(String(decoding: answer.body, as: UTF8.self))")
            #expect(Self.json(answer)["status"] as? String == "accepted")
            #expect(Self.json(answer)["assets"] as? Int == assets)
            // The delivery is kept exactly: urls.web/stream, webhook, webhook_events_filter, logs included.
            #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = $1", ["msg_\(id)"], as: [UInt8].self) == Array(body.utf8))
        }
        try harness.waitForAssets("stored", count: 3)
        let connection = try harness.connection()
        defer { connection.close() }
        func row(_ id: String) throws -> [String?] {
            let result = try #require(
                try connection.query(
                    """
                    SELECT status, version, source, deployment, to_char(deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), metrics->>'total_time',
                           to_char(created_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US'), to_char(started_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US'),
                           to_char(completed_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US')
                    FROM predictions WHERE id = $1
                    """, [id]
                ).first)
            return try (0..<9).map { try result.decode($0, as: String?.self) }
        }
        // Milliseconds and nanoseconds in one body, each kept to PostgreSQL's microsecond.
        #expect(
            try row("gm3qorzdhgbfurvjtvhg6dckhu") == [
                "succeeded", "hidden", "api", nil, nil, "6.777",
                "09:41:15.127000", "09:41:15.136428", "09:41:21.904733",
            ])
        let deployedRow = try row("b5v1c8e0xnrma0cq2y3sfj6z2r")
        #expect(deployedRow[0...3] == ["succeeded", "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc", "api", "acme/mug-shots"])
        #expect(deployedRow[4] == "2026-06-12 13:15:30.080", "\(deployedRow)")
        #expect(try row("7d8qw1kv3hrme0cq2x9bn5yt4m")[0...3] == ["aborted", "hidden", "api", "acme/flux-schnell-prod"])

        for (id, names) in [("gm3qorzdhgbfurvjtvhg6dckhu", ["real-0.png"]), ("b5v1c8e0xnrma0cq2y3sfj6z2r", ["dep-0.png", "dep-1.png"])] {
            let stored = try harness.storedAssets(predictionID: id)
            #expect(stored.map { URL(string: $0.sourceURL)!.lastPathComponent } == names)
            for (n, asset) in stored.enumerated() {
                let size = Int(URLComponents(string: asset.sourceURL)!.queryItems!.first { $0.name == "size" }!.value!)!
                #expect(try harness.storage().getObject(key: asset.key) == FakeProvider.bytes(names[n], size: size))
                #expect(asset.key == "\(harness.prefix)replicate/\(id)/\(n).png")
            }
        }
        // aborted: terminal, nothing queued or fetched, and a late start event cannot move it back.
        let late = Array(#"{"id":"7d8qw1kv3hrme0cq2x9bn5yt4m","status":"starting","created_at":"2026-06-12T10:02:44.561Z","output":null}"#.utf8)
        #expect(try harness.post(late, to: daemon).status == 200)
        #expect(try harness.scalar("SELECT status FROM predictions WHERE id = '7d8qw1kv3hrme0cq2x9bn5yt4m'", as: String.self) == "aborted")
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = '7d8qw1kv3hrme0cq2x9bn5yt4m'", as: Int.self) == 0)
        #expect(try harness.fake.stats().counts.keys.sorted() == ["/files/dep-0.png", "/files/dep-1.png", "/files/real-0.png"])
        let lookups = try LookupClient(port: daemon.port, token: token)
        let lookedUp = try lookups.json(try lookups.send("GET", "/v1/predictions/replicate/7d8qw1kv3hrme0cq2x9bn5yt4m"))
        #expect(lookedUp["status"] as? String == "aborted")
        #expect((lookedUp["assets"] as? [Any])?.isEmpty == true)
        try lookups.validateCaptured()
        #expect(try daemon.stop() == 0)
    }

    /// data: outputs are decoded at intake into the spool (fsynced before the 2xx, here seen with no workers
    /// running), then uploaded like any asset under `replicate/{id}/{n}{.ext}`; a malformed one is a failed
    /// asset with a reason, never a 5xx; a repeat adds nothing and leaves no file behind; a spool file lost
    /// before upload is decoded again from the recorded delivery.
    @Test func dataOutputsAreDecodedAtIntakeAndArchived() throws {
        let harness = try ArchiveHarness()
        var daemon = try harness.startDaemon(extra: ["AFTERIMAGE_WORKERS_COUNT": "0"])
        let sync = try fixture("real-shaped-sync-data-uri.json")
        let syncID = "q0m6x3b1f5rmc0cq2xbr9hz8nw"
        let webp = Array(Data(base64Encoded: "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")!)
        let png = Array(Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")!)
        let answer = try harness.post(Array(sync.utf8), to: daemon, webhookID: "msg_sync")
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        #expect(Self.json(answer)["assets"] as? Int == 2)

        // Before any worker runs: each decoded file is in the spool with the acknowledged hash.
        let connection = try harness.connection()
        defer { connection.close() }
        let rows = try connection.query(
            """
            SELECT pointer, output_index, source_kind, state, spool_path, spool_sha256, spool_size, content_type, source_url,
                   delivery_id IS NOT NULL
            FROM assets WHERE prediction_id = $1 ORDER BY output_index
            """, [syncID]
        ).map { row in
            (
                pointer: try row.decode(0, as: String.self), index: try row.decode(1, as: Int.self), kind: try row.decode(2, as: String.self),
                state: try row.decode(3, as: String.self), path: try row.decode(4, as: String?.self), sha: try row.decode(5, as: String?.self),
                size: try row.decode(6, as: Int64?.self), type: try row.decode(7, as: String?.self), source: try row.decode(8, as: String.self),
                hasDelivery: try row.decode(9, as: Bool.self)
            )
        }
        #expect(rows.map(\.pointer) == ["/0", "/1"])
        #expect(rows.map(\.index) == [0, 1])
        #expect(rows.allSatisfy { $0.kind == "inline" && $0.state == "pending" && $0.hasDelivery })
        #expect(rows.map(\.type) == ["image/webp", "image/png"])
        #expect(rows.map(\.source) == ["data:image/webp;base64", "data:application/octet-stream;base64"])
        for (row, bytes) in zip(rows, [webp, png]) {
            let path = try #require(row.path)
            #expect(path.hasPrefix(harness.spoolDirectory + "/"))
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
            #expect(row.sha == Self.sha256(bytes) && row.size == Int64(bytes.count))
        }
        // The kept output has the headers, not the payloads.
        let output = try harness.scalar("SELECT output::text FROM predictions WHERE id = $1", [syncID], as: String.self)
        #expect(output == #"["data:image/webp;base64,", "data:application/octet-stream;base64,"]"#)

        // The same body again under another webhook id: accepted, no new asset, no file left behind.
        let spoolBefore = Set(try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory))
        #expect(try harness.post(Array(sync.utf8), to: daemon, webhookID: "msg_sync_again").status == 200)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [syncID], as: Int.self) == 2)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory)) == spoolBefore)

        // A data: URI written as JSONSerialization writes it (escaped slashes), a malformed one, and a URL.
        let mixedID = "mix\(UUID().uuidString.prefix(6).lowercased())"
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 0x42, count: 3000)
        let escaped = "data:;base64," + Data(jpeg).base64EncodedString().replacingOccurrences(of: "/", with: "\\/")
        let mixed = Array(
            ("""
            {"id":"\(mixedID)","status":"succeeded","completed_at":"\(ISO8601DateFormatter().string(from: Date()))",
             "output":{"b":"data:image\\/png;base64,!!not base64!!","a":"\(escaped)","c":"\(harness.fake.url("\(mixedID).png", "size=900&type=image/png"))"}}
            """).utf8)
        let mixedAnswer = try harness.post(mixed, to: daemon)
        #expect(mixedAnswer.status == 200, "\(String(decoding: mixedAnswer.body, as: UTF8.self))")
        #expect(try harness.scalar("SELECT state FROM assets WHERE prediction_id = $1 AND pointer = '/b'", [mixedID], as: String.self) == "failed")
        let reason = try harness.scalar("SELECT failure_reason FROM assets WHERE prediction_id = $1 AND pointer = '/b'", [mixedID], as: String.self)
        #expect(reason.contains("malformed data: URI"), "\(reason)")
        #expect(
            try harness.scalar(
                "SELECT string_agg(pointer || '=' || output_index, ',' ORDER BY output_index) FROM assets WHERE prediction_id = $1",
                [mixedID], as: String.self) == "/a=0,/b=1,/c=2")
        #expect(try daemon.stop() == 0)

        // One spool file lost (another machine's spool, say): decoded again from the recorded delivery.
        try FileManager.default.removeItem(atPath: try #require(rows[1].path))
        daemon = try harness.startDaemon()
        try harness.waitForAssets("stored", count: 4)
        let storage = try harness.storage()
        let stored = try harness.storedAssets(predictionID: syncID)
        #expect(stored.map(\.key) == ["\(harness.prefix)replicate/\(syncID)/0.webp", "\(harness.prefix)replicate/\(syncID)/1.png"])
        for (asset, bytes) in zip(stored, [webp, png]) {
            #expect(try storage.getObject(key: asset.key) == bytes)
            #expect(asset.sha256 == Self.sha256(bytes))
        }
        let mixedStored = try harness.storedAssets(predictionID: mixedID)
        #expect(mixedStored.map(\.key) == ["\(harness.prefix)replicate/\(mixedID)/0.jpg", "\(harness.prefix)replicate/\(mixedID)/2.png"])
        #expect(try storage.getObject(key: mixedStored[0].key) == jpeg)
        #expect(daemon.log.contains("decoding it again from the recorded delivery"))
        try waitUntil(timeout: .seconds(10), "spool empty") {
            (try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory)).isEmpty
        }
        #expect(try daemon.stop() == 0)
    }

    /// Replicate's download credential goes to `replicate.token_hosts` only: here 127.0.0.2 stands for
    /// replicate.delivery and 127.0.0.1 / localhost for any other host the operator allowed. Redirects in
    /// either direction carry it only onto a token host.
    @Test func theAPITokenGoesOnlyToTokenHosts() throws {
        let harness = try ArchiveHarness()
        let tokenHost = try FakeProvider(host: "127.0.0.2")
        let token = "r8_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_REPLICATE_API_TOKEN": token, "AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "0",
            "AFTERIMAGE_REPLICATE_TOKEN_HOSTS": "127.0.0.2",
            "AFTERIMAGE_FETCH_ALLOWED_HOSTS": "127.0.0.1 127.0.0.2 localhost",
        ])
        let id = "tok\(UUID().uuidString.prefix(6).lowercased())"
        let output = [
            tokenHost.url("own.png", "size=1000&type=image/png"),
            harness.fake.url("other.png", "size=1000&type=image/png"),
            "http://localhost:\(harness.fake.port)/files/named.png?size=1000&type=image/png",
            tokenHost.url(
                "away.png",
                "redirect=" + harness.fake.url("away-target.png", "size=1000&type=image/png")
                    .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!),
            harness.fake.url(
                "home.png",
                "redirect=" + tokenHost.url("home-target.png", "size=1000&type=image/png")
                    .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!),
        ]
        #expect(try harness.post(harness.prediction(id: id, output: output), to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 5)
        let bearer = "Bearer \(token)"
        let onTokenHost = try tokenHost.stats().authorization
        let elsewhere = try harness.fake.stats().authorization
        #expect(onTokenHost["/files/own.png"] == [bearer])
        #expect(onTokenHost["/files/away.png"] == [bearer])
        #expect(onTokenHost["/files/home-target.png"] == [bearer])
        #expect(elsewhere["/files/other.png"] == [""])
        #expect(elsewhere["/files/named.png"] == [""])
        #expect(elsewhere["/files/away-target.png"] == [""], "the token followed a redirect off its hosts")
        #expect(elsewhere["/files/home.png"] == [""])
        let credentialElsewhere = elsewhere.values.joined().contains { !$0.isEmpty }
        #expect(!credentialElsewhere)
        #expect(!daemon.log.contains(token))
        #expect(try daemon.stop() == 0)
    }

    /// Signed bodies whose kept strings hold NUL: accepted (NULs left out of the interpreted copy, the raw
    /// body kept), repeats answered `duplicate`, never 503; their outputs archived; intake goes on.
    @Test func nulInKeptStringsIsNeverA503() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let id = "nul\(UUID().uuidString.prefix(6).lowercased())"
        let body = Array(
            ("""
            {"id":"\(id)","status":"succeeded","model":"acme/m\\u0000","version":"v\\u0000","error":"x\\u0000y",
             "input":{"prompt":"a\\u0000b"},"metrics":{"predict_time":1,"n\\u0000":2},"completed_at":"\(ISO8601DateFormatter().string(from: Date()))",
             "output":["\(harness.fake.url("\(id).png", "size=2000&type=image/png"))"]}
            """).utf8)
        for attempt in 0..<3 {
            let answer = try harness.post(body, to: daemon, webhookID: "msg_\(id)")
            #expect(answer.status == 200, "attempt \(attempt): \(String(decoding: answer.body, as: UTF8.self))")
            #expect(Self.json(answer)["status"] as? String == (attempt == 0 ? "accepted" : "duplicate"))
        }
        #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = $1", ["msg_\(id)"], as: [UInt8].self) == body)
        #expect(
            try harness.scalar(
                "SELECT error || '|' || model || '|' || version || '|' || (input->>'prompt') FROM predictions WHERE id = $1",
                [id], as: String.self) == "xy|acme/m|v|ab")
        let other = "ok\(UUID().uuidString.prefix(6).lowercased())"
        #expect(try harness.post(harness.prediction(id: other, output: [harness.fake.url("\(other).png", "size=100")]), to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 2)
        #expect(try daemon.stop() == 0)
    }

    /// Prediction ids that would be unsafe in a key: 400, the body kept raw, nothing interpreted; the
    /// Stability generation id is checked even when the body carries the bytes inline.
    @Test func unsafeIDsAreRefusedAndKeptRaw() throws {
        let rig = try StabilityRig()
        let daemon = try rig.startDaemon()
        let harness = rig.harness
        let unsafe = [#"../../stability/x"#, ".", "..", #"a\\b"#, #"a\u0000b"#, "a\\u007f", String(repeating: "a", count: 129)]
        for (n, id) in unsafe.enumerated() {
            let url = harness.fake.url("u\(n).png")
            let body = Array(#"{"id":"\#(id)","status":"succeeded","output":["\#(url)"]}"#.utf8)
            let answer = try harness.post(body, to: daemon, webhookID: "msg_unsafe_\(n)")
            #expect(answer.status == 400, "\(id): \(String(decoding: answer.body, as: UTF8.self))")
            #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = $1", ["msg_unsafe_\(n)"], as: [UInt8].self) == body)
            #expect(try harness.scalar("SELECT outcome FROM deliveries WHERE webhook_id = $1", ["msg_unsafe_\(n)"], as: String.self) == "unparseable")
        }
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 0)
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 64)).base64EncodedString()
        let stability = Array(#"{"id": "../../replicate/x", "image": "\#(png)", "finish_reason": "SUCCESS", "seed": 1}"#.utf8)
        let refused = try rig.post(stability, to: daemon, webhookID: "msg_stability_unsafe")
        #expect(refused.status == 400, "\(String(decoding: refused.body, as: UTF8.self))")
        #expect(try harness.scalar("SELECT body FROM deliveries WHERE webhook_id = 'msg_stability_unsafe'", as: [UInt8].self) == stability)
        #expect(try harness.scalar("SELECT count(*) FROM assets", as: Int.self) == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory).isEmpty)
        #expect(try daemon.stop() == 0)
    }

    /// A 3 MB signed body (Replicate's logs of a long run) is accepted under the default limit and archived.
    @Test func logHeavyBodiesAreAccepted() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let id = "logs\(UUID().uuidString.prefix(6).lowercased())"
        var object = try #require(
            try JSONSerialization.jsonObject(
                with: harness.prediction(
                    id: id, output: [harness.fake.url("\(id).png", "size=1234&type=image/png")]
                ).data) as? [String: Any])
        object["logs"] = (0..<75_000).map { "step \($0): loss 0.\($0 % 997) lr 1e-4 grad_norm 1.\($0 % 89)" }.joined(separator: "\n")
        let body = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        #expect(body.count > 3_000_000)
        let answer = try harness.post(body, to: daemon)
        #expect(answer.status == 200, "\(String(decoding: answer.body.prefix(500), as: UTF8.self))")
        try harness.waitForAssets("stored", count: 1)
        #expect(try harness.scalar("SELECT length(body) FROM deliveries", as: Int.self) == body.count)
        #expect(try daemon.stop() == 0)
    }
}

extension ReplicateRealFormatsTests {
    /// A 15 MiB log-heavy webhook costs the daemon about two copies of its body while it is recorded (the
    /// HTTP layer's and libpq's send buffer), not three: it is inserted on its own, not copied into the
    /// batch's array parameter. The same bound as the Stability inline test.
    @Test func aLargeBodyIsNotCopiedIntoTheBatch() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let pid = daemon.process.processIdentifier
        // Warm up (connections, prepared statements, the S3 client) so the baseline is the daemon at work.
        let warm = "warm\(UUID().uuidString.prefix(6).lowercased())"
        #expect(try harness.post(harness.prediction(id: warm, output: [harness.fake.url("\(warm).png", "size=100")]), to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 1)
        let before = try StabilityRig.memory(pid: pid)
        let id = "big\(UUID().uuidString.prefix(6).lowercased())"
        var body = Array(#"{"id":"\#(id)","status":"succeeded","output":null,"logs":""#.utf8)
        let line = Array("step 000123: loss 0.4321 lr 1e-4 grad_norm 1.23 tokens/s 4567.8\\n".utf8)
        while body.count < 15 << 20 { body.append(contentsOf: line) }
        body.append(contentsOf: Array(#""}"#.utf8))
        let answer = try harness.post(body, to: daemon)
        #expect(answer.status == 200, "\(String(decoding: answer.body.prefix(300), as: UTF8.self))")
        let after = try StabilityRig.memory(pid: pid)
        let bodyMiB = Double(body.count) / 1_048_576
        let growthMiB = Double(after.peak - before.peak) / 1024
        print(
            "replicate memory: body \(String(format: "%.1f", bodyMiB)) MiB; daemon VmHWM before \(before.peak / 1024) MiB, after \(after.peak / 1024) MiB; growth \(String(format: "%.1f", growthMiB)) MiB"
        )
        #expect(growthMiB < bodyMiB * 2.5, "peak grew by \(growthMiB) MiB for a \(bodyMiB) MiB body")
        #expect(try harness.scalar("SELECT length(body) FROM deliveries ORDER BY id DESC LIMIT 1", as: Int.self) == body.count)
        #expect(try daemon.stop() == 0)
    }
}

extension Array where Element == UInt8 {
    fileprivate var data: Data { Data(self) }
}
