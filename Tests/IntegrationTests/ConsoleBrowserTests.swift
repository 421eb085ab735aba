import Foundation
import PQ
import TestSupport
import Testing

/// Issue 18 in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by
/// Selenium from the project's .venv) against the real daemon, PostgreSQL and SeaweedFS of the test run.
/// The outputs are real PNGs and a WAV, archived by the daemon from a local server through the webhook
/// path; Tests/Browser/console_browser_test.py does the clicking and says which promise broke.
@Suite("Console in headless Chromium", .serialized)
struct ConsoleBrowserTests {
    @Test func signInGalleryPredictionAndRetryInChromium() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let media = try PythonFake(script: "fake_media.py")
        func image(_ name: String, hue: Int) -> String { "http://127.0.0.1:\(media.port)/image/\(name).png?size=192&hue=\(hue)" }

        // Phase one: the daemon archives real files, and fails one it may not fetch.
        let archiving = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token])
        let tag = UUID().uuidString.prefix(6).lowercased()
        #expect(
            try harness.post(
                harness.prediction(id: "br-\(tag)-a", output: [image("a0", hue: 200), image("a1", hue: 320), image("a2", hue: 20)]),
                to: archiving
            ).status == 200)
        #expect(
            try harness.post(
                harness.prediction(
                    id: "br-\(tag)-b",
                    output: [
                        image("b0", hue: 140),
                        "http://127.0.0.1:\(media.port)/audio/b1.wav?hz=523",
                    ]),
                to: archiving
            ).status == 200)
        #expect(try harness.post(harness.prediction(id: "br-\(tag)-c", output: ["http://blocked.invalid/lost.png"]), to: archiving).status == 200)
        try harness.waitForAssets("stored", count: 5)
        try harness.waitForAssets("failed", count: 1)
        try archiving.stop()
        let failedAsset = try harness.scalar("SELECT id FROM assets WHERE state = 'failed'", as: Int64.self)

        // Outputs in the other states, written directly; phase two runs no workers, so they stay put and the
        // retried asset stays pending for the check below.
        try harness.seedPrediction("br-\(tag)-d", status: "succeeded")
        try harness.seedAsset(predictionID: "br-\(tag)-d", index: 0, .init(state: "pending", key: nil, nextAttemptInSeconds: 3600))
        try harness.seedAsset(predictionID: "br-\(tag)-d", index: 1, .init(state: "in_flight", key: nil))
        try harness.seedPrediction("br-\(tag)-e", status: "succeeded")
        try harness.seedAsset(
            predictionID: "br-\(tag)-e", index: 0,
            .init(
                state: "expired", key: nil,
                failureReason: "the source answered 404 after its deadline"))
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token, "AFTERIMAGE_WORKERS_COUNT": "0"])

        let root = TestEnvironment.repositoryRoot
        let python = root.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestSupportError("\(python) is missing: run scripts/setup.sh (make test does) to install Selenium")
        }
        let screenshots = root.appendingPathComponent(".local").path
        let output: String
        do {
            output = try runCommand(
                python,
                [
                    root.appendingPathComponent("Tests/Browser/console_browser_test.py").path,
                    "--base", "http://127.0.0.1:\(daemon.port)", "--token", token, "--bucket-origin", harness.s3.endpoint,
                    "--images", "4", "--audio", "1", "--failed-asset", String(failedAsset),
                    "--placeholders", "failed,pending,in_flight,expired", "--screenshots", screenshots,
                ])
        } catch {
            Issue.record("the browser test failed:\n\(error)\n--- daemon log (tail):\n\(daemon.log.suffix(3000))")
            try? daemon.stop()
            return
        }
        #expect(output.contains("console browser test passed"), "\(output)")

        // The Retry click reached the database: the failed asset is queued again, tries reset.
        let connection = try harness.connection()
        defer { connection.close() }
        let row = try #require(try connection.query("SELECT state, attempts, failure_reason FROM assets WHERE id = $1", [failedAsset]).first)
        #expect(try row.decode(0, as: String.self) == "pending")
        #expect(try row.decode(1, as: Int.self) == 0)
        #expect(row.isNull(2))

        for name in ["console.png", "console-dark.png", "console-360.png"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: screenshots + "/" + name))
            #expect(data.count > 10_000 && data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "\(name) is not a PNG")
        }
        try daemon.stop()
        #expect(!daemon.log.contains(token), "the token appears in the daemon's log")
        #expect(!archiving.log.contains(token))
    }
}
