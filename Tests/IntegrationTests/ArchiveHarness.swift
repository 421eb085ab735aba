import Afterimage
import AfterimageTestSupport
import Curl
import Foundation
import PQ
import S3
import TestSupport

/// Everything an end-to-end archive test needs: a fresh database, a spool folder, the fake provider, a
/// webhook secret, and helpers to sign and post webhooks and to look at the tables and the bucket.
final class ArchiveHarness: @unchecked Sendable {
    // Owned by one test at a time.
    let databaseURL: String
    let spoolDirectory: String
    let fake: FakeProvider
    let secret = "whsec_" + Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    var s3: TestEnvironment.S3
    let prefix: String

    /// `databaseURL`: a database of the test's own (a private cluster it stops and starts) instead of a
    /// fresh one on the shared server.
    init(s3: TestEnvironment.S3? = nil, databaseURL: String? = nil) throws {
        self.databaseURL = try databaseURL ?? TestEnvironment.freshDatabase(prefix: "archive")
        spoolDirectory = NSTemporaryDirectory() + "afterimage-spool-\(UUID().uuidString)"
        fake = try FakeProvider()
        self.s3 = try s3 ?? TestEnvironment.s3()
        // A prefix per test keeps tests that share the bucket apart.
        prefix = "t-\(UUID().uuidString.prefix(8).lowercased())/"
    }

    deinit { try? FileManager.default.removeItem(atPath: spoolDirectory) }

    /// Daemon environment: local fake provider allowed (http, 127.0.0.1, private networks on).
    func environment(port: Int, spool: String? = nil, extra: [String: String] = [:]) -> [String: String] {
        [
            "AFTERIMAGE_DATABASE_URL": databaseURL,
            "AFTERIMAGE_HTTP_PORT": String(port),
            "AFTERIMAGE_STORAGE_ENDPOINT": s3.endpoint, "AFTERIMAGE_STORAGE_REGION": s3.region,
            "AFTERIMAGE_STORAGE_BUCKET": s3.bucket, "AFTERIMAGE_STORAGE_ACCESS_KEY_ID": s3.accessKeyID,
            "AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY": s3.secretAccessKey, "AFTERIMAGE_STORAGE_PREFIX": prefix,
            "AFTERIMAGE_REPLICATE_WEBHOOK_SECRET": secret,
            "AFTERIMAGE_FETCH_ALLOWED_HOSTS": "127.0.0.1 localhost",
            "AFTERIMAGE_FETCH_ALLOWED_SCHEMES": "http",
            "AFTERIMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "AFTERIMAGE_WORKERS_SPOOL_DIR": spool ?? spoolDirectory,
            "AFTERIMAGE_WORKERS_COUNT": "4",
            "AFTERIMAGE_WORKERS_LEASE_SECONDS": "4",
            "AFTERIMAGE_LOG_LEVEL": "debug",
        ].merging(extra) { $1 }
    }

    func startDaemon(extra: [String: String] = [:], spool: String? = nil) throws -> DaemonProcess {
        let port = freePort()
        let daemon = try DaemonProcess(environment: environment(port: port, spool: spool, extra: extra), port: port)
        _ = try daemon.waitForStatus("/readyz", 200)
        return daemon
    }

    /// A Replicate prediction body pointing at the fake provider.
    func prediction(id: String, status: String = "succeeded", output: Any?, completedAt: Date? = Date()) -> [UInt8] {
        var object: [String: Any] = [
            "id": id, "model": "test/model", "version": "v1", "status": status, "input": ["prompt": "a cat"],
            "created_at": "2026-11-21T10:00:00.000Z", "data_removed": false, "error": NSNull(),
        ]
        object["output"] = output ?? NSNull()
        if let completedAt { object["completed_at"] = ISO8601DateFormatter().string(from: completedAt) }
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    /// Signs and posts a webhook; `tamper` changes the body after signing.
    @discardableResult
    func post(
        _ body: [UInt8], to daemon: DaemonProcess, webhookID: String = "msg_\(UUID().uuidString)",
        timestamp: Int64 = Int64(Date().timeIntervalSince1970), secret: String? = nil,
        tamper: Bool = false, route: String = "/v1/webhooks/replicate"
    ) throws -> CurlResponse {
        // A safety bound, not a speed check: a 40 MiB Stability body through a debug build on a busy
        // 2-core machine can take a while.
        try SignedWebhook(body, secret: secret ?? self.secret, id: webhookID, timestamp: timestamp)
            .post(port: daemon.port, route: route, tamper: tamper, timeout: .seconds(120))
    }

    func connection() throws -> Connection { try Connection.connect(url: databaseURL) }

    func scalar<T: PQDecodable>(_ sql: String, _ parameters: [any PQEncodable] = [], as: T.Type = T.self) throws -> T {
        let connection = try connection()
        defer { connection.close() }
        guard let row = try connection.query(sql, parameters).first else { throw TestSupportError("no row for \(sql)") }
        return try row.decode(0, as: T.self)
    }

    func waitForAssets(_ state: String, count: Int, timeout: Duration = .seconds(60)) throws {
        try waitUntil(timeout: timeout, pollEvery: .milliseconds(100), "\(count) assets \(state)") {
            try scalar("SELECT count(*) FROM assets WHERE state = $1", [state], as: Int.self) >= count
        }
    }

    func storage() throws -> S3Client {
        S3Client(
            endpoint: try S3Endpoint(endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, pathStyle: true),
            credentials: S3Credentials(accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey, sessionToken: nil))
    }

    struct StoredAsset {
        let pointer: String
        let sourceURL: String
        let key: String
        let sha256: String
        let size: Int64
        let contentType: String?
    }

    func storedAssets(predictionID: String) throws -> [StoredAsset] {
        let connection = try connection()
        defer { connection.close() }
        return try connection.query(
            """
            SELECT pointer, source_url, storage_key, sha256, size_bytes, content_type FROM assets
            WHERE prediction_id = $1 AND state = 'stored' ORDER BY output_index
            """, [predictionID]
        ).map { row in
            StoredAsset(
                pointer: try row.decode(0), sourceURL: try row.decode(1), key: try row.decode(2),
                sha256: try row.decode(3), size: try row.decode(4), contentType: try row.decode(5))
        }
    }
}
