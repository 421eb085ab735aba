import Foundation
import PQ
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// Issue 12's reconciliation points against the fake Replicate API: web-created predictions, a body the
/// database cannot take as sent, data: outputs, and the 429 wait without Retry-After.
extension ReconcileTests {
    func runCLI(_ s: Scenario, extra: [String: String]) throws -> (Int32, String, String) {
        try runAfterimage(
            ["reconcile", "--since", "2h"],
            environment: reconcileEnvironment(s).merging([
                "AFTERIMAGE_DATABASE_URL": s.harness.databaseURL, "AFTERIMAGE_LOG_LEVEL": "info",
            ]) { $1 }.merging(extra) { $1 })
    }

    /// `source: "web"` predictions (kept by Replicate indefinitely) are skipped unless
    /// `replicate.reconcile_web` is on.
    @Test func webPredictionsAreReconciledOnlyWhenAskedFor() throws {
        var s = try makeScenario(count: 6) { _ in true }
        for index in s.predictions.indices { s.predictions[index]["source"] = index % 2 == 0 ? "web" : "api" }
        let web = s.predictions.enumerated().filter { $0.offset % 2 == 0 }.map { $0.element["id"] as! String }
        try s.api.load(s.predictions)
        let (status, out, err) = try runCLI(s, extra: [:])
        #expect(status == 0, "\(err)")
        #expect(out.contains("recorded: 3"), "\(out)")
        #expect(out.contains("created on the website, skipped (replicate.reconcile_web): 3"), "\(out)")
        #expect(Set(try reconciledIDs(s.harness)) == Set(s.unknown).subtracting(web))

        let (again, out2, err2) = try runCLI(s, extra: ["AFTERIMAGE_REPLICATE_RECONCILE_WEB": "true"])
        #expect(again == 0, "\(err2)")
        #expect(out2.contains("recorded: 3") && out2.contains("already terminal here: 3"), "\(out2)")
        #expect(Set(try reconciledIDs(s.harness)) == Set(s.unknown))
        #expect(try s.harness.scalar("SELECT count(*) FROM predictions WHERE source = 'web'", as: Int.self) == 3)
    }

    /// A listed prediction whose strings hold NUL (PostgreSQL text cannot) no longer ends the pass: it is
    /// recorded with the NULs left out, and the predictions after it are recorded too.
    @Test func aPredictionWithNULsDoesNotEndThePass() throws {
        var s = try makeScenario(count: 4) { _ in true }
        let odd = s.unknown[1]
        s.predictions[1]["error"] = "warn\u{0}ing"
        s.predictions[1]["model"] = "acme/m\u{0}"
        s.predictions[1]["input"] = ["prompt": "a\u{0}b"]
        try s.api.load(s.predictions)
        let (status, out, err) = try runCLI(s, extra: [:])
        #expect(status == 0, "\(err)")
        #expect(out.contains("recorded: 4"), "\(out)")
        #expect(Set(try reconciledIDs(s.harness)) == Set(s.unknown))
        #expect(
            try s.harness.scalar(
                "SELECT error || '|' || model || '|' || (input->>'prompt') FROM predictions WHERE id = $1",
                [odd], as: String.self) == "warning|acme/m|ab")
        #expect(try s.harness.scalar("SELECT count(*) FROM assets WHERE prediction_id = $1", [odd], as: Int.self) == s.files[odd]?.count)
    }

    /// data: outputs in listed predictions are archived: recorded by `afterimage reconcile` (no spool of its
    /// own) the daemon's workers decode them from the recorded delivery; recorded by the daemon's own pass
    /// they are decoded into its spool first.
    @Test func dataOutputsFoundByReconciliationAreArchived() throws {
        var s = try makeScenario(count: 2) { _ in true }
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let data = "data:image/png;base64," + Data(png).base64EncodedString()
        for index in s.predictions.indices { s.predictions[index]["output"] = [data] }
        let (first, second) = (s.unknown[1], s.unknown[0])  // the older one first, by the command
        try s.api.load([s.predictions[1]])
        let (status, out, err) = try runCLI(s, extra: [:])
        #expect(status == 0, "\(err)")
        #expect(out.contains("recorded: 1") && out.contains("outputs queued: 1"), "\(out)")
        #expect(try s.harness.scalar("SELECT spool_path IS NULL FROM assets WHERE prediction_id = $1", [first], as: Bool.self))

        try s.api.load(s.predictions)
        let daemon = try startDaemon(s)
        try s.harness.waitForAssets("stored", count: 2)
        let storage = try s.harness.storage()
        for id in [first, second] {
            let stored = try s.harness.storedAssets(predictionID: id)
            #expect(stored.map(\.key) == ["\(s.harness.prefix)replicate/\(id)/0.png"])
            #expect(try storage.getObject(key: stored[0].key) == png)
            #expect(stored.first?.sourceURL == "data:image/png;base64")
        }
        #expect(
            daemon.log.components(separatedBy: "decoding a data: output from the recorded delivery").count == 2,
            "only the command's prediction should need decoding by a worker")
        #expect(try s.harness.fake.stats().counts.isEmpty)
        #expect(try daemon.stop() == 0)
    }

    /// A 429 without Retry-After waits 30 s (Replicate's body says the limit "resets in ~30s"), not less.
    @Test func rateLimitWithoutRetryAfterWaitsThirtySeconds() throws {
        let s = try makeScenario(count: 2) { _ in true }
        try s.api.load(s.predictions, script: ["throttle_first": 2, "retry_after": NSNull()])
        let waits = Mutex<[TimeInterval]>([])
        let client = try ReplicateAPIClient(
            configuration: .init(baseURL: s.api.baseURL, token: s.api.token),
            sleep: { seconds in
                waits.withLock { $0.append(seconds) }
                return true
            })
        let page = try client.listPage(client.firstPageURL(createdAfter: Date().addingTimeInterval(-7200)))
        #expect(page.items.count == 2)
        #expect(waits.withLock { $0 } == [30, 30])
        #expect(try s.api.stats().throttled == 2)
    }
}
