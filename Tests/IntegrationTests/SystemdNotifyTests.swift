import Afterimage
import AfterimageTestSupport
import Curl
import Foundation
import Glibc
import TestSupport
import Testing

/// `afterimage serve` under a pretend systemd: the test owns the notify socket and the database.
@Suite("systemd notify, watchdog and reload", .serialized)
struct SystemdNotifyTests {
    static func secret() -> String {
        "whsec_" + Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    /// A config file holding what SIGHUP may change (secrets in the environment would win over it).
    static func writeConfig(_ path: String, secret: String, logLevel: String = "info") throws {
        let json = """
            {"replicate": {"webhook_secret": ["\(secret)"]}, "log": {"level": "\(logLevel)"},
             "fetch": {"allowed_hosts": ["127.0.0.1"], "allowed_schemes": ["http"], "allow_private_networks": true}}
            """
        try json.write(toFile: path, atomically: true, encoding: .utf8)
    }

    static func postStarting(_ port: Int, secret: String) throws -> Int {
        let id = "p\(UUID().uuidString.prefix(8).lowercased())"
        let body = Array(#"{"id":"\#(id)","status":"starting","model":"m","version":"v","input":{},"output":null}"#.utf8)
        return try SignedWebhook(body, secret: secret).post(port: port, timeout: .seconds(20)).status
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    @Test("READY once the server accepts, WATCHDOG while the loops beat (database or not), RELOADING/READY on SIGHUP, STOPPING on SIGTERM")
    func lifecycle() throws {
        let postgres = try PrivatePostgres(database: "notify")
        defer { postgres.destroy() }
        let s3 = try TestEnvironment.s3()
        let listener = try NotifyListener()
        defer { listener.close() }
        let configPath = NSTemporaryDirectory() + "afterimage-notify-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: configPath) }
        let spool = NSTemporaryDirectory() + "afterimage-spool-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let first = Self.secret()
        let second = Self.secret()
        try Self.writeConfig(configPath, secret: first)

        let port = freePort()
        let daemon = try DaemonProcess(
            arguments: ["serve", "--config", configPath],
            environment: [
                "AFTERIMAGE_DATABASE_URL": postgres.url, "AFTERIMAGE_HTTP_PORT": String(port),
                "AFTERIMAGE_STORAGE_ENDPOINT": s3.endpoint, "AFTERIMAGE_STORAGE_REGION": s3.region,
                "AFTERIMAGE_STORAGE_BUCKET": s3.bucket, "AFTERIMAGE_STORAGE_ACCESS_KEY_ID": s3.accessKeyID,
                "AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY": s3.secretAccessKey,
                "AFTERIMAGE_WORKERS_SPOOL_DIR": spool, "AFTERIMAGE_WORKERS_COUNT": "1",
                "AFTERIMAGE_DATABASE_ACQUIRE_TIMEOUT_MS": "500",
                "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000",
            ], port: port)
        let pid = daemon.process.processIdentifier

        // READY=1 once the server accepts (the database may still be on its way: /readyz says when).
        let ready = try listener.wait(for: "READY=1") { $0.has("READY=1") }
        #expect(daemon.get("/healthz")?.status == 200, "READY=1 came before the listener accepted")
        #expect(!listener.messages[..<ready].contains { $0.has("WATCHDOG=1") }, "the watchdog pinged before READY=1")
        _ = try daemon.waitForStatus("/readyz", 200)
        #expect(try Self.postStarting(port, secret: first) == 200, "/readyz said ready before the schema was current")

        // Pings at half of WATCHDOG_USEC: at least two more within a few seconds.
        let watchdog1 = try listener.wait(for: "a first WATCHDOG=1", after: ready) { $0.has("WATCHDOG=1") }
        let watchdog2 = try listener.wait(for: "a second WATCHDOG=1", after: watchdog1) { $0.has("WATCHDOG=1") }
        let gap = listener.messages[watchdog2].at - listener.messages[watchdog1].at
        #expect(gap >= .milliseconds(300) && gap <= .milliseconds(2500), "pings \(gap) apart for WATCHDOG_USEC=1s")
        // STATUS= carries the queue.
        try listener.wait(for: "a queue STATUS=") { $0.value("STATUS")?.contains("pending") == true }

        // SIGHUP with rotated secrets and a new log level: RELOADING=1 + MONOTONIC_USEC, then READY=1.
        try Self.writeConfig(configPath, secret: second, logLevel: "debug")
        let before = listener.messages.count - 1
        kill(pid, SIGHUP)
        let reloading = try listener.wait(for: "RELOADING=1", after: before) { $0.has("RELOADING=1") }
        let stamp = try #require(listener.messages[reloading].value("MONOTONIC_USEC").flatMap(UInt64.init))
        let now = Self.monotonicMicroseconds()
        #expect(stamp <= now && now - stamp < 30_000_000, "MONOTONIC_USEC=\(stamp) is not CLOCK_MONOTONIC (now \(now))")
        let readyAgain = try listener.wait(for: "READY=1 after reload", after: reloading) { $0.has("READY=1") }
        #expect(try Self.postStarting(port, secret: second) == 200, "the new secret is not in force")
        #expect(try Self.postStarting(port, secret: first) == 401, "the old secret still verifies")
        #expect(daemon.process.isRunning && daemon.process.processIdentifier == pid)

        // A bad configuration is refused and the running one kept.
        try #"{"log": {"level": "loud"}}"#.write(toFile: configPath, atomically: true, encoding: .utf8)
        kill(pid, SIGHUP)
        let refusedReload = try listener.wait(for: "RELOADING=1 (bad config)", after: readyAgain) { $0.has("RELOADING=1") }
        let refused = try listener.wait(for: "READY=1 after refusal", after: refusedReload) { $0.has("READY=1") }
        #expect(listener.messages[refused].value("STATUS")?.contains("reload refused") == true)
        #expect(try Self.postStarting(port, secret: second) == 200, "a refused reload changed the secrets")
        #expect(daemon.log.contains("reload refused"))

        // Database down: readiness fails, but the watchdog reports the daemon's own loops, which go on
        // beating while they wait, so pings continue and systemd does not restart a daemon that serves 503s.
        try postgres.stop()
        _ = try daemon.waitForStatus("/readyz", 503)
        let down = listener.messages.count - 1
        let pingWhileDown = try listener.wait(for: "WATCHDOG=1 with the database down", after: down) { $0.has("WATCHDOG=1") }
        try listener.wait(for: "a second WATCHDOG=1 with the database down", after: pingWhileDown) { $0.has("WATCHDOG=1") }
        #expect(daemon.process.isRunning && daemon.process.processIdentifier == pid)

        // Back up: ready again, in the same process.
        try postgres.start()
        _ = try daemon.waitForStatus("/readyz", 200)
        #expect(try Self.postStarting(port, secret: second) == 200)

        // SIGTERM: STOPPING=1, exit 0, and it is the last of the lifecycle messages.
        let status = try daemon.stop()
        #expect(status == 0)
        let stopping = try listener.wait(for: "STOPPING=1", timeout: .seconds(5)) { $0.has("STOPPING=1") }
        let lifecycle = listener.messages.enumerated().filter {
            $0.element.has("READY=1") || $0.element.has("RELOADING=1") || $0.element.has("STOPPING=1")
        }
        #expect(
            lifecycle.map { $0.element.assignments.first { ["READY=1", "RELOADING=1", "STOPPING=1"].contains($0) }! }
                == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"])
        #expect(lifecycle.last?.offset == stopping)

        // Secrets never reach the log.
        let log = daemon.log
        for secret in [first, second, s3.secretAccessKey] { #expect(!log.contains(secret)) }
    }
}
