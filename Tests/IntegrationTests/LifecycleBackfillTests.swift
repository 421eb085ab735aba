import AfterimageTestSupport
import Foundation
import Glibc
import PQ
import TestSupport
import Testing

/// Issue 19, backfill: `afterimage backfill` against the fake Replicate API, real PostgreSQL and SeaweedFS:
/// the whole range is paged, web predictions only when asked, an interrupted run resumes from the page
/// recorded in the database, and outputs the source no longer has end `expired` with the reason.
@Suite("Lifecycle: backfill", .serialized)
struct LifecycleBackfillTests {
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    @Test("pages the whole range, skips web predictions unless asked, resumes after a crash, expires what the source lost")
    func backfillWithResume() throws {
        let harness = try ArchiveHarness()
        let api = try FakeReplicateAPI()
        try TestEnvironment.migrate(harness.databaseURL)
        let tag = UUID().uuidString.prefix(6).lowercased()
        let now = Date()
        // 20 predictions, created 1, 3, 5, … 39 days ago (newest first): 15 within 30 days. Every fifth was
        // made on the website; every third's file is gone at the source (404).
        var predictions: [[String: Any]] = []
        var inRange: [String] = []
        var web: [String] = []
        var gone: [String] = []
        for i in 0..<20 {
            let id = "bf\(tag)\(String(format: "%02d", i))"
            let created = now.addingTimeInterval(-Double(2 * i + 1) * 86400)
            let file = "\(id).png"
            let url = harness.fake.url(file, i % 3 == 0 ? "status=404" : "size=\(2000 + i)&type=image/png")
            predictions.append([
                "id": id, "model": "test/model", "version": "v1", "status": "succeeded", "input": ["prompt": "p\(i)"],
                "output": [url], "error": NSNull(), "logs": "", "metrics": ["predict_time": 1.0], "data_removed": false,
                "source": i % 5 == 4 ? "web" : "api",
                "created_at": Self.iso(created), "started_at": Self.iso(created.addingTimeInterval(1)),
                "completed_at": Self.iso(created.addingTimeInterval(2)),
                "urls": ["get": "https://api.replicate.com/v1/predictions/\(id)"],
            ])
            guard 2 * i + 1 < 30 else { continue }
            if i % 5 == 4 {
                web.append(id)
                continue
            }
            inRange.append(id)
            if i % 3 == 0 { gone.append(id) }
        }
        // Four a page; the third page waits for the test, which kills the command there.
        try api.load(predictions, pageSize: 4, script: ["gate_pages": [8]])
        let environment = harness.environment(port: freePort()).merging([
            "AFTERIMAGE_REPLICATE_API_TOKEN": api.token, "AFTERIMAGE_REPLICATE_BASE_URL": api.baseURL,
        ]) { $1 }

        let first = Process()
        first.executableURL = URL(fileURLWithPath: try TestEnvironment.afterimageBinary())
        first.arguments = ["backfill", "--since", "30d"]
        first.environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].merging(environment) { $1 }
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try launchWithDefaultSignals(first)
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(100), "the backfill waiting at its third page") {
            try api.stats().waiting == 1
        }
        kill(first.processIdentifier, SIGKILL)  // a crash, not a polite stop
        first.waitUntilExit()
        #expect(try harness.scalar("SELECT pages FROM backfill_runs", as: Int.self) == 2)
        #expect(try harness.scalar("SELECT next_url FROM backfill_runs", as: String.self).contains("cursor=8"))
        #expect(try harness.scalar("SELECT finished_at IS NULL FROM backfill_runs", as: Bool.self))
        // The first two pages: 8 predictions, one of them from the website.
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == 7)

        try api.openGates()
        let (status, out, err) = try runAfterimage(["backfill", "--resume"], environment: environment)
        #expect(status == 0, "\(err)")
        #expect(out.contains("(resumed)"), "\(out)")
        #expect(err.contains("backfill: 100% of the range"), "\(err)")
        let stats = try api.stats()
        // Pages 0 and 4 were not asked again; 8 twice (the killed run's request and the resumed one); 12
        // reached predictions older than the range, so 16 was never needed.
        #expect(stats.pages["0"] == 1 && stats.pages["4"] == 1 && stats.pages["8"] == 2 && stats.pages["12"] == 1, "\(stats.pages)")
        #expect(stats.pages["16"] == nil)
        #expect(try harness.scalar("SELECT finished_at IS NOT NULL FROM backfill_runs", as: Bool.self))
        let recorded = try harness.connection()
        defer { recorded.close() }
        let ids = try recorded.query("SELECT id FROM predictions ORDER BY id").map { try $0.decode(0, as: String.self) }
        #expect(ids == inRange.sorted())
        // Recorded exactly as reconciliation does.
        #expect(
            try harness.scalar(
                "SELECT count(*) FROM deliveries WHERE source = 'reconcile' AND webhook_id LIKE 'reconcile:%:succeeded'",
                as: Int.self) == inRange.count)

        let (again, _, againErr) = try runAfterimage(["backfill", "--resume"], environment: environment)
        #expect(again == 1 && againErr.contains("no unfinished backfill"), "\(againErr)")
        let (withWeb, _, withWebErr) = try runAfterimage(["backfill", "--since", "30d", "--include-web"], environment: environment)
        #expect(withWeb == 0, "\(withWebErr)")
        #expect(try harness.scalar("SELECT count(*) FROM predictions", as: Int.self) == inRange.count + web.count)

        // A daemon's workers: the outputs that still exist are stored, a 404 after the deadline is `expired`.
        let daemon = try harness.startDaemon()
        let total = inRange.count + web.count
        let expiredCount = (inRange + web).filter { id in gone.contains(id) || (Int(id.suffix(2))! % 3 == 0) }.count
        try harness.waitForAssets("expired", count: expiredCount)
        try harness.waitForAssets("stored", count: total - expiredCount)
        #expect(
            try harness.scalar("SELECT count(*) FROM assets WHERE state = 'expired' AND failure_reason LIKE '%404%'", as: Int.self)
                == expiredCount)
        #expect(try daemon.stop() == 0)
    }
}
