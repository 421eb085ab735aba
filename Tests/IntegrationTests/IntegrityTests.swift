import Crypto
import Foundation
import Logging
import PQ
import S3
import TestSupport
import Testing

@testable import Afterimage

/// Issue 13, points 8–11 and 13, against the real binary, PostgreSQL and SeaweedFS: credentials in URLs
/// never printed, configured URLs refused at load, operator output escaped, schemas from newer builds
/// refused, the migration lock waited for within a bound, multipart uploads checked against the recorded
/// SHA-256, long source URLs archivable, and the spool's names, paths and periodic sweep.
@Suite("Integrity (issue 13, points 8-11 and 13)", .serialized)
struct IntegrityTests {
    // MARK: 8. Credentials in URLs

    @Test func checkConfigRefusesURLsWithCredentialsNamingTheKeyAndNeverPrintsThem() throws {
        let harness = try ArchiveHarness()
        let cases = [
            ("storage.endpoint", "AFTERIMAGE_STORAGE_ENDPOINT", "https://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENG@s3.example.com"),
            ("stability.base_url", "AFTERIMAGE_STABILITY_BASE_URL", "https://app:sk-NotForLogs1234@api.stability.ai"),
        ]
        for (key, variable, value) in cases {
            let (status, out, err) = try runAfterimage(["check-config"], environment: harness.environment(port: 1, extra: [variable: value]))
            #expect(status == 78, "\(key): \(err)")
            #expect(err.contains(key), "\(err)")
            for secret in ["wJalrXUtnFEMIK7MDENG", "AKIAIOSFODNN7EXAMPLE", "sk-NotForLogs1234"] {
                #expect(!out.contains(secret) && !err.contains(secret), "\(key) leaked \(secret)")
            }
        }
        let (status, out, err) = try runAfterimage(["check-config"], environment: harness.environment(port: 1))
        #expect(status == 0, "\(err)")
        #expect(out.contains("storage.endpoint = \"\(harness.s3.endpoint)\""))
        #expect(!out.contains(harness.s3.secretAccessKey))
    }

    // MARK: 13. Operator output, schemas, migration lock

    @Test func assetsListEscapesControlCharacters() throws {
        let harness = try ArchiveHarness()
        try migrate(harness)
        let id = "esc\u{1B}[2Jid"
        try harness.seedPrediction(id)
        try harness.seedAsset(
            predictionID: id, index: 0,
            .init(
                state: "failed", failureReason: "gone\tforged\tcolumns\nforged row\u{1B}[31m red \u{9B}1m https://u:pw1234@h.example/x"))
        let (status, out, err) = try runAfterimage(["assets", "list"], environment: harness.environment(port: 1))
        #expect(status == 0, "\(err)")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(lines.count == 1, "one asset, one line: \(out)")
        #expect(lines.first?.split(separator: "\t", omittingEmptySubsequences: false).count == 7, "\(out)")
        #expect(!out.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\u{9B}" })
        #expect(out.contains("esc\\u{1B}[2Jid"))
        #expect(out.contains("gone\\tforged\\tcolumns\\nforged row\\u{1B}[31m"))
        #expect(!out.contains("pw1234"))
    }

    @Test func aSchemaFromANewerBuildIsRefusedByMigrateAndByServeNamingTheMigrations() throws {
        let harness = try ArchiveHarness()
        try migrate(harness)
        let connection = try harness.connection()
        try connection.execute("INSERT INTO schema_migrations (name, checksum) VALUES ('9998_later.sql', 'x'), ('9999_future.sql', 'y')")
        connection.close()

        let (status, _, err) = try runAfterimage(["migrate"], environment: ["AFTERIMAGE_DATABASE_URL": harness.databaseURL])
        #expect(status == 1)
        #expect(err.contains("9998_later.sql, 9999_future.sql"), "\(err)")
        for migrate in ["true", "false"] {
            let port = freePort()
            let daemon = try DaemonProcess(
                environment: harness.environment(port: port, extra: ["AFTERIMAGE_DATABASE_MIGRATE": migrate]),
                port: port)
            try waitUntil(timeout: .seconds(30), "serve (database.migrate = \(migrate)) to exit") { !daemon.process.isRunning }
            #expect(daemon.process.terminationStatus == 1, "\(daemon.log)")
            #expect(daemon.log.contains("9998_later.sql, 9999_future.sql"), "\(daemon.log)")
        }
    }

    @Test func theMigrationLockIsWaitedForWithinABound() throws {
        let url = try TestEnvironment.freshDatabase(prefix: "miglock")
        // The same key held in another database of the cluster (another deployment, or a test migrating
        // beside this one): a different lock, which the message must not name.
        let elsewhere = try Connection.connect(url: try TestEnvironment.freshDatabase(prefix: "miglock_other"))
        defer { elsewhere.close() }
        try elsewhere.query("SELECT pg_advisory_lock($1)", [Migrator.advisoryLockKey])
        let holder = try Connection.connect(url: url)
        defer { holder.close() }
        try holder.query("SELECT pg_advisory_lock($1)", [Migrator.advisoryLockKey])
        // No lock_timeout on this session: only the migrator's own bound can end the wait.
        let started = ContinuousClock.now
        let attempt = Background<String> {
            let connection = try Connection.connect(url: url, limits: SessionLimits())
            defer { connection.close() }
            do {
                try Migrator(lockWait: .seconds(2)).migrate(on: connection, logger: Logger(label: "test"))
                return "migrated while another process held the lock"
            } catch let error as MigrationError {
                return "\(error.code.rawValue)|\(error.isTransient)|\(error.message)"
            }
        }
        let outcome: String
        do {
            outcome = try attempt.value(timeout: .seconds(15))
        } catch {
            _ = try? holder.query("SELECT pg_advisory_unlock($1)", [Migrator.advisoryLockKey])
            throw error
        }
        let elapsed = ContinuousClock.now - started
        let parts = outcome.split(separator: "|", maxSplits: 2).map(String.init)
        #expect(parts.first == "lock_busy", "\(outcome)")
        #expect(parts.dropFirst().first == "true", "a held lock is retried like an outage")
        #expect(outcome.contains("backend pid \(holder.backendPID)"), "\(outcome)")
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(10), "\(elapsed)")
        try holder.query("SELECT pg_advisory_unlock($1)", [Migrator.advisoryLockKey])
        #expect(try !Migrator(lockWait: .seconds(2)).migrate(databaseURL: url, logger: Logger(label: "test")).isEmpty)
    }

    // MARK: 10. Multipart uploads

    @Test func aMultipartUploadIsCompletedOnlyWhenTheWholeFileHasTheRecordedSHA256() throws {
        let harness = try ArchiveHarness()
        let storage = try harness.storage()
        let path = NSTemporaryDirectory() + "afterimage-multipart-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bytes = FakeProvider.bytes("multipart", size: (11 << 20) + 12_345)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let recorded = FakeProvider.sha256Hex(bytes)
        // What the database says the file held before it changed on disk.
        let other = FakeProvider.sha256Hex(Array(bytes.dropLast()) + [bytes.last! ^ 1])
        let key = harness.prefix + "multipart/\(UUID().uuidString)"
        func upload(expecting sha: String) throws -> String {
            try MultipartUpload(
                storage: storage, key: key, path: path, size: Int64(bytes.count), partSize: 5 << 20, partsInFlight: 2,
                expectedSHA256: sha
            ).run(contentType: "application/octet-stream", metadata: ["sha256": sha])
        }
        let error = #expect(throws: ArchiveError.self) { try upload(expecting: other) }
        #expect(error?.code == .spool)
        #expect(error?.message.contains(recorded) == true, "\(String(describing: error))")
        #expect(try storage.headObject(key: key) == nil, "an upload whose file is not the recorded one was completed")

        _ = try upload(expecting: recorded)
        let info = try #require(try storage.headObject(key: key))
        #expect(info.size == Int64(bytes.count))
        #expect(info.metadata["sha256"] == recorded)
        try storage.deleteObject(key: key)
    }

    // MARK: 11. Long source URLs

    @Test func aLongSignedSourceURLIsArchivedWithBoundedMetadata() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon()
        let id = "longurl\(UUID().uuidString.prefix(6).lowercased())"
        let name = "\(id)-" + String(repeating: "segment", count: 200) + ".png"
        let signature = (0..<3000).map { String(format: "%02x", UInt8(truncatingIfNeeded: $0 &* 37)) }.joined()
        let url = harness.fake.url(name, "size=5000&type=image/png&X-Amz-Credential=AKIAEXAMPLE%2F20261201&X-Amz-Signature=\(signature)")
        #expect(url.utf8.count > 7000)
        #expect(try harness.post(harness.prediction(id: id, output: [url]), to: daemon).status == 200)
        try harness.waitForAssets("stored", count: 1, timeout: .seconds(60))

        let asset = try #require(try harness.storedAssets(predictionID: id).first)
        let storage = try harness.storage()
        let info = try #require(try storage.headObject(key: asset.key))
        let metadata = try #require(info.metadata["source-url"])
        #expect(metadata.utf8.count <= 1024)
        #expect(metadata.hasPrefix("http://127.0.0.1:\(harness.fake.port)/files/\(id)-segment"))
        #expect(metadata.hasSuffix(Archiver.truncationMarker))
        #expect(!metadata.contains("?") && !metadata.contains("X-Amz"), "\(metadata)")
        #expect(info.metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count } <= 2048)
        var stored: [UInt8] = []
        _ = try storage.getObject(key: asset.key) { stored.append(contentsOf: $0) }
        #expect(stored == FakeProvider.bytes(name, size: 5000))
        // The asset keeps the whole URL.
        #expect(try harness.scalar("SELECT source_url FROM assets WHERE prediction_id = $1", [id], as: String.self) == url)
        try daemon.stop()
    }

    // MARK: 9. The spool

    @Test func aSpoolPathRecordedOutsideTheSpoolIsNeverUploaded() throws {
        let harness = try ArchiveHarness()
        try migrate(harness)
        // A file outside the spool, and a row that names it through `..` with its size and hash.
        let outside = harness.spoolDirectory + "-outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let planted = Array("not the output: a file the spool path must never reach".utf8)
        try Data(planted).write(to: URL(fileURLWithPath: outside + "/secret"))
        let id = "outside\(UUID().uuidString.prefix(6).lowercased())"
        try harness.seedPrediction(id)
        let name = "\(id)-0.png"
        let assetID = try harness.seedAsset(
            predictionID: id, index: 0,
            .init(
                state: "pending", sourceURL: harness.fake.url(name, "size=3000&type=image/png"),
                spoolPath: harness.spoolDirectory + "/../" + URL(fileURLWithPath: outside).lastPathComponent + "/secret",
                spoolSize: Int64(planted.count)))
        let connection = try harness.connection()
        try connection.execute("UPDATE assets SET spool_sha256 = $2 WHERE id = $1", [assetID, FakeProvider.sha256Hex(planted)])
        connection.close()

        let daemon = try harness.startDaemon()
        try harness.waitForAssets("stored", count: 1)
        let asset = try #require(try harness.storedAssets(predictionID: id).first)
        var stored: [UInt8] = []
        _ = try harness.storage().getObject(key: asset.key) { stored.append(contentsOf: $0) }
        #expect(stored == FakeProvider.bytes(name, size: 3000), "the file outside the spool was uploaded")
        #expect(try harness.fake.count(name) == 1)
        #expect(FileManager.default.fileExists(atPath: outside + "/secret"))
        try daemon.stop()
    }

    @Test func stalePartSpoolAndInlineFilesAreSweptPeriodicallyAndNothingElse() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_WORKERS_COUNT": "0", "AFTERIMAGE_WORKERS_SPOOL_SWEEP_INTERVAL": "1"])
        let spool = harness.spoolDirectory
        let daemonPID = daemon.process.processIdentifier
        let me = getpid()  // the test process: alive, and not the daemon
        let id = "sweep\(UUID().uuidString.prefix(6).lowercased())"
        try harness.seedPrediction(id)
        func file(_ name: String, age: TimeInterval) throws -> String {
            let path = "\(spool)/\(name)"
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: path)
            return path
        }
        let hour: TimeInterval = 3600
        // Planted after the start-up sweep: only a periodic one can take them.
        let stored = try file("asset-9001.spool", age: hour)
        let failed = try file("asset-9002.spool", age: hour)
        let pending = try file("asset-9003.spool", age: hour)
        let storedID = try harness.seedAsset(predictionID: id, index: 0, .init(state: "stored", key: "k0", spoolPath: stored, spoolSize: 1))
        let failedID = try harness.seedAsset(
            predictionID: id, index: 1, .init(state: "failed", failureReason: "gave up", spoolPath: failed, spoolSize: 1))
        let pendingID = try harness.seedAsset(predictionID: id, index: 2, .init(state: "pending", spoolPath: pending, spoolSize: 1))
        let orphanInline = try file("inline-\(UUID().uuidString.lowercased()).4194305.inline", age: hour)
        // The daemon's own part that it has not claimed: a writer claims before it creates, so a leftover.
        let ownStalePart = try file("asset-77.\(UUID().uuidString.lowercased()).\(daemonPID).part", age: 0)
        let otherWritersPart = try file("asset-78.\(UUID().uuidString.lowercased()).\(me).part", age: hour)
        let otherWritersInline = try file("inline-\(UUID().uuidString.lowercased()).\(me).inline", age: hour)
        let target = spool + "-link-target"
        FileManager.default.createFile(atPath: target, contents: Data("x".utf8))
        defer { try? FileManager.default.removeItem(atPath: target) }
        let link = "\(spool)/asset-9004.spool"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)

        let gone = [stored, failed, orphanInline, ownStalePart]
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(200), "the periodic sweep") {
            gone.allSatisfy { !FileManager.default.fileExists(atPath: $0) }
        }
        // And again: the sweep repeats.
        let later = try file("asset-9005.spool", age: hour)
        try waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(200), "another sweep") { !FileManager.default.fileExists(atPath: later) }
        for kept in [pending, otherWritersPart, otherWritersInline, link, target] {
            #expect(FileManager.default.fileExists(atPath: kept), "\(kept) was removed")
        }
        let connection = try harness.connection()
        defer { connection.close() }
        let paths = try connection.query(
            "SELECT id, spool_path FROM assets WHERE id = ANY($1) ORDER BY id",
            [try PQArray<Int64>([storedID, failedID, pendingID].map { Optional($0) })]
        )
        .map { (try $0.decode(0, as: Int64.self), try $0.decode(1, as: String?.self)) }
        #expect(paths.map(\.1) == [nil, nil, pending], "finished assets no longer point at removed files")
        #expect(daemon.log.contains("stale spool files removed"))
        try daemon.stop()
    }

    func migrate(_ harness: ArchiveHarness) throws {
        let (status, _, err) = try runAfterimage(["migrate"], environment: ["AFTERIMAGE_DATABASE_URL": harness.databaseURL])
        guard status == 0 else { throw TestSupportError("migrate failed: \(err)") }
    }
}
