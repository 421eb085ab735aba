import Foundation
import PQ
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// The foundation issue's end-to-end checks: the real binary against real PostgreSQL and SeaweedFS.
@Suite("Foundation: migrate, check-config, health and readiness")
struct FoundationTests {
    func storageEnvironment() throws -> [String: String] {
        let s3 = try TestEnvironment.s3()
        return [
            "AFTERIMAGE_STORAGE_ENDPOINT": s3.endpoint, "AFTERIMAGE_STORAGE_REGION": s3.region,
            "AFTERIMAGE_STORAGE_BUCKET": s3.bucket, "AFTERIMAGE_STORAGE_ACCESS_KEY_ID": s3.accessKeyID,
            "AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY": s3.secretAccessKey,
        ]
    }

    @Test func twoMigrateRunsAtOnceApplyEachFileExactlyOnce() throws {
        let url = try TestEnvironment.freshDatabase(prefix: "migrate")
        let results = Mutex<[(Int32, String, String)]>([])
        let threads = (0..<2).map { _ in
            Thread {
                let result = (try? runAfterimage(["migrate"], environment: ["AFTERIMAGE_DATABASE_URL": url])) ?? (-1, "", "could not run")
                results.withLock { $0.append(result) }
            }
        }
        for thread in threads { thread.start() }
        try waitUntil(timeout: .seconds(60), "both migrate runs") { results.withLock { $0.count } == 2 }
        for (status, _, stderr) in results.withLock({ $0 }) {
            #expect(status == 0, "migrate failed: \(stderr)")
        }
        let outputs = results.withLock { $0.map(\.1) }
        #expect(outputs.filter { $0.contains("applied: 0001_initial.sql") }.count == 1, "exactly one run applies: \(outputs)")
        #expect(outputs.filter { $0.contains("schema is current") }.count == 1)

        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        let rows = try connection.query("SELECT name, count(*) FROM schema_migrations GROUP BY name ORDER BY name")
        #expect(rows.count == Migration.bundledNames.count)
        for row in rows { #expect(try row.decode(1, as: Int.self) == 1) }
        for table in ["deliveries", "predictions", "assets"] {
            let exists = try connection.query("SELECT to_regclass($1) IS NOT NULL", [table])
            #expect(try exists.first?.decode(0, as: Bool.self) == true, "\(table) missing")
        }
    }

    @Test func aChangedAppliedMigrationIsRefused() throws {
        let url = try TestEnvironment.freshDatabase(prefix: "checksum")
        let (first, _, firstErr) = try runAfterimage(["migrate"], environment: ["AFTERIMAGE_DATABASE_URL": url])
        #expect(first == 0, "\(firstErr)")
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        try connection.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE name = '0001_initial.sql'")
        let (status, _, stderr) = try runAfterimage(["migrate"], environment: ["AFTERIMAGE_DATABASE_URL": url])
        #expect(status == 1)
        #expect(stderr.contains("0001_initial.sql") && stderr.contains("checksum"), "\(stderr)")
    }

    @Test func checkConfigWithoutDatabaseURLExits78NamingTheKey() throws {
        let (status, stdout, stderr) = try runAfterimage(["check-config"], environment: try storageEnvironment())
        #expect(status == 78)
        #expect(stderr.contains("database.url"), "\(stderr)")
        #expect(stdout.isEmpty)
    }

    @Test func checkConfigPrintsEverythingWithSecretsRedacted() throws {
        var environment = try storageEnvironment()
        environment["AFTERIMAGE_DATABASE_URL"] = "postgresql://afterimage:db-password-xyz@127.0.0.1:1/x"
        environment["AFTERIMAGE_API_TOKENS"] = "api-token-xyz"
        let (status, stdout, stderr) = try runAfterimage(["check-config"], environment: environment)
        #expect(status == 0, "\(stderr)")
        #expect(stdout.contains("storage.bucket = "))
        #expect(stdout.contains("database.url = (set, redacted)"))
        let secret = environment["AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY"]!
        for leaked in ["db-password-xyz", "api-token-xyz", secret] {
            #expect(!stdout.contains(leaked) && !stderr.contains(leaked))
        }
    }

    @Test func unknownCommandIsAUsageError() throws {
        let (status, _, _) = try runAfterimage(["no-such-command"], environment: [:])
        #expect(status == 64)
    }

    /// /readyz follows PostgreSQL: 200 while it answers, 503 naming the database while it is down,
    /// 200 again once it is back — through the same pool, so broken connections must be replaced.
    @Test func readinessFollowsPostgres() throws {
        let postgres = try PrivatePostgres()
        defer { postgres.destroy() }
        let port = freePort()
        var environment = try storageEnvironment()
        environment["AFTERIMAGE_DATABASE_URL"] = postgres.url
        environment["AFTERIMAGE_HTTP_PORT"] = String(port)
        environment["AFTERIMAGE_DATABASE_POOL_SIZE"] = "2"
        environment["AFTERIMAGE_WORKERS_SPOOL_DIR"] = NSTemporaryDirectory() + "afterimage-spool-\(UUID().uuidString)"
        let daemon = try DaemonProcess(environment: environment, port: port)

        let healthy = try daemon.waitForStatus("/healthz", 200)
        #expect(String(decoding: healthy.body, as: UTF8.self).contains("ok"))
        _ = try daemon.waitForStatus("/readyz", 200)

        try postgres.stop()
        let down = try daemon.waitForStatus("/readyz", 503)
        let body = String(decoding: down.body, as: UTF8.self)
        #expect(body.contains("\"not_ready\"") && body.contains("database"), "\(body)")
        #expect(daemon.get("/healthz")?.status == 200, "liveness must not depend on the database")

        try postgres.start()
        _ = try daemon.waitForStatus("/readyz", 200)
        #expect(try daemon.stop() == 0)
        #expect(!daemon.log.contains(environment["AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY"]!))
    }

    /// A bucket that refuses our signature makes the daemon not ready, and the answer names storage.
    @Test func readinessNamesStorageWhenCredentialsAreWrong() throws {
        let port = freePort()
        var environment = try storageEnvironment()
        environment["AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY"] = "definitely-the-wrong-secret"
        environment["AFTERIMAGE_DATABASE_URL"] = try TestEnvironment.freshDatabase(prefix: "ready")
        environment["AFTERIMAGE_HTTP_PORT"] = String(port)
        let daemon = try DaemonProcess(environment: environment, port: port)
        let answer = try daemon.waitForStatus("/readyz", 503)
        let body = String(decoding: answer.body, as: UTF8.self)
        #expect(body.contains("storage"), "\(body)")
        #expect(!body.contains("definitely-the-wrong-secret"))
        #expect(try daemon.stop() == 0)
    }
}

extension Migration {
    static var bundledNames: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: TestEnvironment.repositoryRoot.appendingPathComponent("migrations").path)
            .filter { $0.hasSuffix(".sql") }) ?? []
    }
}
