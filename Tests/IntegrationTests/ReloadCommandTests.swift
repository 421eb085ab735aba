import Curl
import Foundation
import TestSupport
import Testing

/// `afterimage reload` outside systemd, with `RUNTIME_DIRECTORY` set by hand as systemd sets it for
/// both `ExecStart=` and `ExecReload=`. (NspawnServiceTests runs the same through `systemctl reload`.)
@Suite("afterimage reload")
struct ReloadCommandTests {
    func lookupStatus(port: Int, token: String) throws -> Int {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(10)
        return try CurlSession().perform(
            CurlRequest(
                url: "http://127.0.0.1:\(port)/v1/assets?limit=1",
                headers: [("Authorization", "Bearer \(token)")]), options: options
        ).status
    }

    @Test("returns once the daemon has applied the new file (exit 0), and exits 78 when the daemon refuses it")
    func waitsForTheDaemon() throws {
        let harness = try ArchiveHarness()
        let runtime = NSTemporaryDirectory() + "afterimage-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let config = runtime + "/afterimage.json"
        try #"{"api": {"tokens": ["first-token"]}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let port = freePort()
        let daemon = try DaemonProcess(
            arguments: ["serve", "--config", config],
            environment: harness.environment(port: port).merging(["RUNTIME_DIRECTORY": runtime]) { $1 },
            port: port)
        _ = try daemon.waitForStatus("/readyz", 200)
        let pid = String(daemon.process.processIdentifier)
        #expect(try lookupStatus(port: port, token: "first-token") == 200)

        // Applied: the next request already sees the new token.
        try #"{"api": {"tokens": ["second-token"]}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let (applied, _, appliedError) = try runAfterimage(["reload", "--pid", pid], environment: ["RUNTIME_DIRECTORY": runtime])
        #expect(applied == 0, "\(appliedError)")
        #expect(try lookupStatus(port: port, token: "second-token") == 200)
        #expect(try lookupStatus(port: port, token: "first-token") == 401)

        // Refused: exit 78, the daemon runs on with what it had.
        try #"{"http": {"connection_limit": 0}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let (refused, _, refusedError) = try runAfterimage(["reload", "--pid", pid], environment: ["RUNTIME_DIRECTORY": runtime])
        #expect(refused == 78, "\(refusedError)")
        #expect(refusedError.contains("refused"))
        #expect(daemon.process.isRunning)
        #expect(try lookupStatus(port: port, token: "second-token") == 200)

        // $MAINPID, as systemd sets it for ExecReload=, stands in for --pid.
        try #"{"api": {"tokens": ["third-token"]}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let (byMainPID, _, mainPIDError) = try runAfterimage(["reload"], environment: ["RUNTIME_DIRECTORY": runtime, "MAINPID": pid])
        #expect(byMainPID == 0, "\(mainPIDError)")
        #expect(try lookupStatus(port: port, token: "third-token") == 200)
        #expect(try daemon.stop() == 0)
    }

    @Test("a process that ends instead of confirming: exit 1; no pid: usage error; no RUNTIME_DIRECTORY: only the signal")
    func failures() throws {
        let runtime = NSTemporaryDirectory() + "afterimage-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        // sleep dies of SIGHUP: the command must notice rather than wait out its timeout.
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try launchWithDefaultSignals(sleeper)
        defer { if sleeper.isRunning { sleeper.terminate() } }
        let started = ContinuousClock.now
        let (ended, _, endedError) = try runAfterimage(
            ["reload", "--pid", String(sleeper.processIdentifier), "--timeout", "20"],
            environment: ["RUNTIME_DIRECTORY": runtime])
        sleeper.waitUntilExit()
        #expect(ended == 1, "\(endedError)")
        #expect(endedError.contains("ended before confirming"), "\(endedError)")
        #expect(ContinuousClock.now - started < .seconds(15))

        let (noPID, _, _) = try runAfterimage(["reload"], environment: [:])
        #expect(noPID == 64)

        let other = Process()
        other.executableURL = URL(fileURLWithPath: "/bin/sleep")
        other.arguments = ["60"]
        try launchWithDefaultSignals(other)
        let (signalOnly, _, signalOnlyError) = try runAfterimage(["reload", "--pid", String(other.processIdentifier)], environment: [:])
        other.waitUntilExit()
        #expect(signalOnly == 0, "\(signalOnlyError)")
        #expect(other.terminationReason == .uncaughtSignal && other.terminationStatus == SIGHUP)
    }
}
