import AfterimageTestSupport
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Issue 7 end to end: the real daemon and `afterimage reconcile` against a fake Replicate API
/// (Tests/Fakes/fake_replicate_api.py), real PostgreSQL and SeaweedFS, and the fake provider's files.
@Suite("Reconciliation: no prediction missed when its webhook never arrives", .serialized)
struct ReconcileTests {
    /// Predictions at the fake API (newest first); `unknown` ones are not in the database, the others are
    /// already terminal here (seeded through the intake, with no output, so a wrong write would show:
    /// it would fill the output and queue files nobody should download).
    struct Scenario {
        let harness: ArchiveHarness
        let api: FakeReplicateAPI
        var predictions: [[String: Any]] = []
        var unknown: [String] = []
        var known: [String] = []
        var files: [String: [String]] = [:]
        var allFiles: [String] { unknown.flatMap { files[$0] ?? [] } }

        func object(_ id: String) -> [String: Any] { predictions.first { $0["id"] as? String == id }! }
        func index(_ id: String) -> Int { predictions.firstIndex { $0["id"] as? String == id }! }
        func body(_ id: String) -> [UInt8] { Array(try! JSONSerialization.data(withJSONObject: object(id), options: [.sortedKeys])) }
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// `count` predictions, created 5 s apart going back from a minute ago; `isUnknown(i)` picks the ones
    /// the database lacks. Unknown ones carry one or two output files on the fake provider.
    func makeScenario(count: Int, isUnknown: (Int) -> Bool) throws -> Scenario {
        var scenario = Scenario(harness: try ArchiveHarness(), api: try FakeReplicateAPI())
        let tag = UUID().uuidString.prefix(6).lowercased()
        let now = Date()
        for i in 0..<count {
            let id = "rc\(tag)\(String(format: "%04d", i))"
            let created = now.addingTimeInterval(-60 - Double(i) * 5)
            let unknown = isUnknown(i)
            let names = unknown ? (0..<(1 + i % 2)).map { "\(id)-\($0).png" } : ["\(id)-known.png"]
            let object: [String: Any] = [
                "id": id, "model": "test/model", "version": "v1", "status": "succeeded", "input": ["prompt": "p\(i)"],
                "output": names.map { scenario.harness.fake.url($0, "size=\(3000 + i)&type=image/png") },
                "error": NSNull(), "logs": "", "metrics": ["predict_time": 1.5], "data_removed": false,
                "created_at": Self.iso(created), "started_at": Self.iso(created.addingTimeInterval(1)),
                "completed_at": Self.iso(created.addingTimeInterval(2)),
                "urls": ["get": "https://api.replicate.com/v1/predictions/\(id)"],
            ]
            scenario.predictions.append(object)
            if unknown {
                scenario.unknown.append(id)
                scenario.files[id] = names
            } else {
                scenario.known.append(id)
            }
        }
        try TestEnvironment.migrate(scenario.harness.databaseURL)
        let connection = try scenario.harness.connection()
        defer { connection.close() }
        let intake = ReplicateIntake(retentionSeconds: 3600)
        for (n, id) in scenario.known.enumerated() {
            var object = scenario.object(id)
            object["status"] = ["succeeded", "failed", "canceled"][n % 3]
            object["output"] = NSNull()
            let body = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
            let outcome = try intake.record(.init(provider: .replicate, deliveryID: "seed-\(id)", timestamp: nil, body: body), on: connection)
            #expect(outcome == .accepted(predictionID: id, assets: 0))
        }
        return scenario
    }

    func reconcileEnvironment(_ s: Scenario, token: String? = nil) -> [String: String] {
        [
            "AFTERIMAGE_REPLICATE_API_TOKEN": token ?? s.api.token, "AFTERIMAGE_REPLICATE_BASE_URL": s.api.baseURL,
            "AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "3600",
        ]
    }

    func startDaemon(_ s: Scenario, spool: String? = nil, extra: [String: String] = [:]) throws -> DaemonProcess {
        try s.harness.startDaemon(extra: reconcileEnvironment(s).merging(extra) { $1 }, spool: spool)
    }

    func runCLI(_ s: Scenario, _ arguments: [String] = [], token: String? = nil) throws -> (Int32, String, String) {
        try runAfterimage(
            ["reconcile"] + arguments,
            environment: reconcileEnvironment(s, token: token).merging([
                "AFTERIMAGE_DATABASE_URL": s.harness.databaseURL, "AFTERIMAGE_LOG_LEVEL": "info",
            ]) { $1 })
    }

    /// Prediction ids of the reconcile deliveries, from their deterministic webhook ids.
    func reconciledIDs(_ harness: ArchiveHarness) throws -> [String] {
        let connection = try harness.connection()
        defer { connection.close() }
        return try connection.query("SELECT webhook_id FROM deliveries WHERE source = 'reconcile' ORDER BY id").map { row in
            let parts = try row.decode(0, as: String.self).split(separator: ":")
            return parts.count == 3 ? String(parts[1]) : "?"
        }
    }

    /// Every unknown prediction's files stored once, with the source's bytes; nobody downloaded a known one's.
    func expectArchived(_ s: Scenario) throws {
        let total = s.allFiles.count
        try s.harness.waitForAssets("stored", count: total, timeout: .seconds(120))
        #expect(try s.harness.scalar("SELECT count(*) FROM assets", as: Int.self) == total)
        let storage = try s.harness.storage()
        for id in s.unknown {
            let stored = try s.harness.storedAssets(predictionID: id)
            #expect(stored.count == s.files[id]?.count, "\(id): \(stored.count) stored")
            for asset in stored {
                let name = URL(string: asset.sourceURL)!.lastPathComponent
                let expected = FakeProvider.bytes(name, size: 3000 + s.index(id))
                #expect(try storage.getObject(key: asset.key) == expected, "bytes of \(asset.key)")
                #expect(asset.sha256 == FakeProvider.sha256Hex(expected))
            }
        }
        let counts = try s.harness.fake.stats().counts
        for name in s.allFiles { #expect(counts["/files/\(name)"] == 1, "\(name) downloaded \(counts["/files/\(name)"] ?? 0) times") }
        #expect(counts.values.reduce(0, +) == total, "files of predictions already terminal here were downloaded")
    }

    func snapshot(_ harness: ArchiveHarness, _ ids: [String]) throws -> [String: String] {
        let connection = try harness.connection()
        defer { connection.close() }
        var out: [String: String] = [:]
        for row in try connection.query("SELECT id, status || '|' || updated_at::text || '|' || coalesce(output::text, '') FROM predictions") {
            let id = try row.decode(0, as: String.self)
            if ids.contains(id) { out[id] = try row.decode(1, as: String.self) }
        }
        return out
    }

    // MARK: - Done when

    /// 250 predictions over 3 pages, 40 unknown: exactly those 40 recorded (source = reconcile) and their
    /// outputs archived; the 210 already terminal here untouched (no delivery, same row, nothing queued).
    @Test func recordsExactlyTheMissedPredictionsAndArchivesTheirOutputs() throws {
        let s = try makeScenario(count: 250) { $0 % 6 == 1 && $0 < 240 }
        #expect(s.unknown.count == 40)
        try s.api.load(s.predictions, pageSize: 100)
        let before = try snapshot(s.harness, s.known)
        #expect(before.count == 210)

        let daemon = try startDaemon(s)
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(100), "the reconcile pass") {
            daemon.log.contains("reconcile pass recorded missed predictions")
        }
        #expect(daemon.log.contains("recorded=40"), "\(daemon.log)")
        #expect(Set(try reconciledIDs(s.harness)) == Set(s.unknown))
        #expect(try reconciledIDs(s.harness).count == 40)
        try expectArchived(s)

        #expect(try s.harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 250)
        #expect(try s.harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 250)
        #expect(try snapshot(s.harness, s.known) == before, "predictions already terminal here were written")
        let stats = try s.api.stats()
        #expect(stats.pages == ["0": 1, "100": 1, "200": 1])
        #expect(stats.unauthorized == 0)
        // Recorded exactly as a webhook would: same columns filled from the same body.
        let first = try #require(s.unknown.first)
        #expect(try s.harness.scalar("SELECT status FROM predictions WHERE id = $1", [first], as: String.self) == "succeeded")
        #expect(try s.harness.scalar("SELECT model FROM predictions WHERE id = $1", [first], as: String?.self) == "test/model")
        #expect(
            try s.harness.scalar(
                "SELECT webhook_id FROM deliveries WHERE source = 'reconcile' ORDER BY id LIMIT 1",
                as: String.self) == "reconcile:\(first):succeeded")
        #expect(try daemon.stop() == 0)
    }

    /// A webhook that arrives while a pass runs is neither blocked nor doubled: the pass waits at page 2;
    /// a webhook for a page-1 prediction (already reconciled) and one for a page-2 prediction (not yet)
    /// are accepted at once; in the end one prediction, one set of assets, one download per file.
    @Test func aWebhookDuringAPassIsNotDoubled() throws {
        let s = try makeScenario(count: 250) { $0 % 6 == 1 && $0 < 240 }
        try s.api.load(s.predictions, pageSize: 100, script: ["gate_pages": [100]])
        let daemon = try startDaemon(s)
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(50), "the pass to wait at page 2") {
            try s.api.stats().waiting == 1
        }
        let onPageOne = try #require(s.unknown.first { s.index($0) < 100 })
        let onPageTwo = try #require(s.unknown.first { (100..<200).contains(s.index($0)) })
        #expect(try reconciledIDs(s.harness).contains(onPageOne))
        for id in [onPageOne, onPageTwo] {
            let answer = try s.harness.post(s.body(id), to: daemon)
            #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
            #expect(String(decoding: answer.body, as: UTF8.self).contains("\"accepted\""))
        }
        #expect(try s.api.stats().waiting == 1, "the pass moved on before the webhooks were posted")
        try s.api.openGates()
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(100), "the reconcile pass") {
            daemon.log.contains("reconcile pass recorded missed predictions")
        }
        let reconciled = try reconciledIDs(s.harness)
        #expect(reconciled.count == 39)
        #expect(!reconciled.contains(onPageTwo), "a prediction already terminal here was reconciled again")
        #expect(try s.harness.scalar("SELECT count(*) FROM deliveries WHERE webhook_id LIKE $1", ["%\(onPageTwo)%"], as: Int.self) == 0)
        #expect(try s.harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 250)
        for id in [onPageOne, onPageTwo] {
            #expect(try s.harness.scalar("SELECT count(*) FROM predictions WHERE id = $1", [id], as: Int.self) == 1)
            #expect(try s.harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [id], as: Int.self) == s.files[id]?.count)
        }
        try expectArchived(s)
        #expect(try daemon.stop() == 0)
    }

    /// Two daemons on one database: the first holds the reconcile lock (its pass waits at page 1), the
    /// second's pass is skipped; every page is read once and every missed prediction recorded once.
    @Test func twoDaemonsOnOneDatabaseReconcileOnce() throws {
        let s = try makeScenario(count: 30) { $0 % 4 == 1 }
        try s.api.load(s.predictions, pageSize: 10, script: ["gate_pages": [0]])
        let spoolB = s.harness.spoolDirectory + "-b"
        defer { try? FileManager.default.removeItem(atPath: spoolB) }
        let first = try startDaemon(s)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(50), "the first pass to start") { try s.api.stats().waiting == 1 }
        let second = try startDaemon(s, spool: spoolB)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the second daemon to skip its pass") {
            second.log.contains("another instance holds the reconcile lock")
        }
        try s.api.openGates()
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(100), "the first pass to finish") {
            first.log.contains("reconcile pass recorded missed predictions")
        }
        let stats = try s.api.stats()
        #expect(stats.list == 3)
        #expect(stats.pages == ["0": 1, "10": 1, "20": 1])
        let reconciled = try reconciledIDs(s.harness)
        #expect(reconciled.count == s.unknown.count)
        #expect(Set(reconciled) == Set(s.unknown))
        #expect(!second.log.contains("reconcile pass recorded"))
        try expectArchived(s)
        for daemon in [first, second] { #expect(try daemon.stop() == 0) }
    }

    /// 429 with Retry-After: 1, then 200: the pass waits about a second, retries, and completes; a second
    /// run finds everything terminal here and writes nothing.
    @Test func rateLimitHonoursRetryAfterThenCompletes() throws {
        let s = try makeScenario(count: 12) { $0 % 3 == 0 }
        try s.api.load(s.predictions, pageSize: 5, script: ["throttle_first": 1, "retry_after": "1"])
        let (status, out, err) = try runCLI(s, ["--since", "2h"])
        #expect(status == 0, "\(err)")
        #expect(out.contains("recorded: 4"), "\(out)")
        #expect(out.contains("outputs queued: \(s.allFiles.count)"), "\(out)")
        for id in s.unknown { #expect(out.contains("recorded replicate/\(id)")) }
        #expect(err.contains("reconcile: page 3, 12 predictions seen, 4 recorded"), "\(err)")
        let stats = try s.api.stats()
        #expect(stats.throttled == 1)
        #expect(stats.list == 4)
        #expect(stats.pages == ["0": 1, "5": 1, "10": 1])
        #expect(stats.times.count == 4 && stats.times[1] - stats.times[0] >= 0.9, "Retry-After not honoured: \(stats.times)")
        #expect(try s.harness.scalar("SELECT count(*) FROM assets WHERE state = 'pending'", as: Int.self) == s.allFiles.count)

        try s.api.load(s.predictions, pageSize: 5)
        let (again, out2, err2) = try runCLI(s)
        #expect(again == 0, "\(err2)")
        #expect(out2.contains("recorded: 0") && out2.contains("already terminal here: 12"), "\(out2)")
        #expect(try reconciledIDs(s.harness).count == 4)
    }

    /// 503 twice: the pass backs off (1 s, then 2 s) and completes.
    @Test func serverErrorsBackOffThenComplete() throws {
        let s = try makeScenario(count: 6) { $0 % 2 == 0 }
        try s.api.load(s.predictions, pageSize: 10, script: ["fail_first": 2])
        let (status, out, err) = try runCLI(s)
        #expect(status == 0, "\(err)")
        #expect(out.contains("recorded: 3"), "\(out)")
        let stats = try s.api.stats()
        #expect(stats.failed == 2)
        #expect(stats.times.count == 3)
        if stats.times.count == 3 {
            #expect(stats.times[1] - stats.times[0] >= 0.9 && stats.times[2] - stats.times[1] >= 1.9, "\(stats.times)")
        }
    }

    /// A prediction stuck `processing` here for longer than replicate.reconcile_stale_after, and outside
    /// the list's window, is fetched on its own and recorded; a fresh one is left alone.
    @Test func stuckPredictionsAreRefreshedOneByOne() throws {
        let s = try makeScenario(count: 0) { _ in false }
        let connection = try s.harness.connection()
        defer { connection.close() }
        let intake = ReplicateIntake(retentionSeconds: 3600)
        let stuck = "stuck\(UUID().uuidString.prefix(6).lowercased())"
        let fresh = "fresh\(UUID().uuidString.prefix(6).lowercased())"
        let created = Self.iso(Date().addingTimeInterval(-86400))
        for id in [stuck, fresh] {
            let body = s.harness.prediction(id: id, status: "processing", output: nil, completedAt: nil)
            _ = try intake.record(.init(provider: .replicate, deliveryID: "start-\(id)", timestamp: nil, body: body), on: connection)
        }
        try connection.execute("UPDATE predictions SET updated_at = now() - interval '2 hours' WHERE id = $1", [stuck])
        let done: [String: Any] = [
            "id": stuck, "status": "succeeded", "created_at": created, "completed_at": Self.iso(Date()),
            "output": [s.harness.fake.url("\(stuck).png", "size=100")], "model": "test/model",
        ]
        try s.api.load([], current: [stuck: done, fresh: done])
        let (status, out, err) = try runCLI(s, ["--since", "1h"])
        #expect(status == 0, "\(err)")
        #expect(out.contains("stale predictions refreshed: 1"), "\(out)")
        let stats = try s.api.stats()
        #expect(stats.get == [stuck: 1])
        #expect(try s.harness.scalar("SELECT status FROM predictions WHERE id = $1", [stuck], as: String.self) == "succeeded")
        #expect(try s.harness.scalar("SELECT status FROM predictions WHERE id = $1", [fresh], as: String.self) == "processing")
        #expect(try s.harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1 AND state = 'pending'", [stuck], as: Int.self) == 1)
        #expect(try reconciledIDs(s.harness) == [stuck])
    }

    /// A refused token: the CLI says so (exit 1) without echoing it; the daemon logs it once, stops asking,
    /// and goes on taking webhooks.
    @Test func refusedTokenIsReportedOnceAndPausesReconciliation() throws {
        let s = try makeScenario(count: 3) { _ in true }
        try s.api.load(s.predictions)
        let wrong = "r8_wrong_" + UUID().uuidString
        let (status, out, err) = try runCLI(s, token: wrong)
        #expect(status == 1)
        #expect(err.contains("refused replicate.api_token"), "\(err)")
        #expect(!err.contains(wrong) && !out.contains(wrong))

        try s.api.load(s.predictions)
        let daemon = try s.harness.startDaemon(
            extra: reconcileEnvironment(s, token: wrong).merging([
                "AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "1"
            ]) { $1 })
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the pause to be logged") {
            daemon.log.contains("reconciliation paused")
        }
        #expect(try s.harness.post(s.body(s.unknown[0]), to: daemon).status == 200)
        // Three intervals: a reconciler that had not paused would have asked again by now.
        Thread.sleep(forTimeInterval: 3)
        #expect(try s.api.stats().unauthorized == 1)
        #expect(daemon.log.components(separatedBy: "reconciliation paused").count == 2)
        #expect(!daemon.log.contains(wrong))
        #expect(daemon.get("/healthz")?.status == 200)
        #expect(try daemon.stop() == 0)
    }

    /// Issue 13.13: the reconciler reads `replicate.api_token` through the reloadable settings. A refused
    /// token pauses it; a SIGHUP that rotates the token reaches it, and it resumes without a restart.
    @Test func aTokenRotatedByReloadReachesTheReconciler() throws {
        let s = try makeScenario(count: 2) { _ in true }
        try s.api.load(s.predictions)  // accepts s.api.token only
        let runtime = NSTemporaryDirectory() + "afterimage-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let config = runtime + "/afterimage.json"
        let old = "r8_old_" + UUID().uuidString
        try #"{"replicate": {"api_token": "\#(old)"}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let port = freePort()
        let daemon = try DaemonProcess(
            arguments: ["serve", "--config", config],
            environment: s.harness.environment(
                port: port,
                extra: [
                    "AFTERIMAGE_REPLICATE_BASE_URL": s.api.baseURL, "AFTERIMAGE_REPLICATE_RECONCILE_INTERVAL": "1", "RUNTIME_DIRECTORY": runtime,
                ]), port: port)
        _ = try daemon.waitForStatus("/readyz", 200)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the old token to be refused") {
            daemon.log.contains("reconciliation paused")
        }
        #expect(try reconciledIDs(s.harness).isEmpty)

        try #"{"replicate": {"api_token": "\#(s.api.token)"}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let (reloaded, _, reloadError) = try runAfterimage(
            ["reload", "--pid", String(daemon.process.processIdentifier)],
            environment: ["RUNTIME_DIRECTORY": runtime])
        #expect(reloaded == 0, "\(reloadError)")
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "a pass with the new token") {
            try reconciledIDs(s.harness).sorted() == s.unknown.sorted()
        }
        #expect(daemon.log.contains("reconciliation resumes"))
        #expect(!daemon.log.contains(old) && !daemon.log.contains(s.api.token))
        #expect(try daemon.stop() == 0)
    }

    /// A `next` cursor pointing to another origin is not followed (the token stays home); the first
    /// page's work is kept and the command fails clearly.
    @Test func aForeignCursorIsNotFollowed() throws {
        let s = try makeScenario(count: 8) { $0 % 2 == 0 }
        try s.api.load(s.predictions, pageSize: 4, script: ["next_origin": "http://127.0.0.2:9"])
        let (status, _, err) = try runCLI(s)
        #expect(status == 1)
        #expect(err.contains("outside replicate.base_url"), "\(err)")
        #expect(try reconciledIDs(s.harness).count == 2)
        #expect(try s.api.stats().list == 1)
    }
}
