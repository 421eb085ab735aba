import Curl
import Foundation
import TestSupport
import Testing

/// Issue 13.4: the daemon starts, binds and answers while PostgreSQL is down, keeps the watchdog fed,
/// and resumes on its own when the database returns.
@Suite("Serving without the database", .serialized)
struct OutageTests {
    func request(_ method: String, _ port: Int, _ path: String, headers: [(String, String)] = []) throws -> CurlResponse {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(20)
        return try CurlSession().perform(CurlRequest(method: method, url: "http://127.0.0.1:\(port)\(path)", headers: headers), options: options)
    }

    @Test(
        "PostgreSQL down at start: healthz 200, readyz/webhooks/lookups 503 + Retry-After, READY=1 and WATCHDOG=1 anyway; when it returns a retried webhook is accepted and stored, same process"
    )
    func startsAndResumesWithoutRestart() throws {
        let postgres = try PrivatePostgres(database: "outage")
        defer { postgres.destroy() }
        try postgres.stop()
        let harness = try ArchiveHarness(databaseURL: postgres.url)
        let listener = try NotifyListener()
        defer { listener.close() }
        let token = "outage-token-\(UUID().uuidString.prefix(8))"
        let port = freePort()
        let daemon = try DaemonProcess(
            environment: harness.environment(
                port: port,
                extra: [
                    "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000", "AFTERIMAGE_API_TOKENS": token,
                ]), port: port)
        let pid = daemon.process.processIdentifier

        // Ready as soon as the server accepts; STATUS says the database is still awaited.
        let ready = try listener.wait(for: "READY=1 with the database down") { $0.has("READY=1") }
        let status = listener.messages[ready].value("STATUS") ?? ""
        #expect(status.contains("waiting for the database"), "STATUS=\(status)")
        #expect(daemon.get("/healthz")?.status == 200)
        let readiness = try #require(daemon.get("/readyz"))
        #expect(readiness.status == 503)

        let id = "outage\(UUID().uuidString.prefix(6).lowercased())"
        let name = "\(id).png"
        let body = harness.prediction(id: id, output: [harness.fake.url(name, "size=150000&type=image/png")])
        let webhookID = "msg_\(UUID().uuidString)"
        let timestamp = Int64(Date().timeIntervalSince1970)
        let refused = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] != nil, "a 503 to a provider must say when to retry")
        let lookup = try request("GET", port, "/v1/predictions/replicate/\(id)", headers: [("Authorization", "Bearer \(token)")])
        #expect(lookup.status == 503)
        #expect(lookup.headers["retry-after"] != nil)

        // The watchdog reports the daemon's own loops, not the database: it keeps pinging.
        let firstPing = try listener.wait(for: "WATCHDOG=1 with the database down", after: ready) { $0.has("WATCHDOG=1") }
        try listener.wait(for: "another WATCHDOG=1 with the database down", after: firstPing) { $0.has("WATCHDOG=1") }

        // The database returns: migrations are applied in the background, everything resumes.
        try postgres.start()
        _ = try daemon.waitForStatus("/readyz", 200, timeout: .seconds(60))
        let accepted = try harness.post(body, to: daemon, webhookID: webhookID, timestamp: timestamp)
        #expect(accepted.status == 200)
        #expect(String(decoding: accepted.body, as: UTF8.self).contains(#""status":"accepted""#))
        try harness.waitForAssets("stored", count: 1, timeout: .seconds(60))
        let stored = try harness.storedAssets(predictionID: id)
        #expect(stored.count == 1)
        if let asset = stored.first {
            #expect(try harness.storage().getObject(key: asset.key) == FakeProvider.bytes(name, size: 150_000))
        }
        #expect(try request("GET", port, "/v1/predictions/replicate/\(id)", headers: [("Authorization", "Bearer \(token)")]).status == 200)

        // One process throughout.
        #expect(daemon.process.isRunning && daemon.process.processIdentifier == pid)
        #expect(daemon.log.contains("database ready"))
        #expect(try daemon.stop() == 0)
    }
}
