import Curl
import Foundation
import Glibc
import TestSupport

/// A fenced code block of README.md, found by the `<!-- tested: NAME -->` line just before it: the tests
/// run the README's own text, so the commands a reader copies are the ones that were run.
enum ReadmeSnippet {
    static func block(_ name: String) throws -> String {
        let readme = try String(contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        guard let marker = lines.firstIndex(of: "<!-- tested: \(name) -->") else {
            throw TestSupportError("README.md has no `<!-- tested: \(name) -->` block")
        }
        var index = marker + 1
        guard index < lines.count, lines[index].hasPrefix("```") else {
            throw TestSupportError("README.md: `<!-- tested: \(name) -->` is not followed by a fenced block")
        }
        var body: [String] = []
        index += 1
        while index < lines.count, !lines[index].hasPrefix("```") {
            body.append(lines[index])
            index += 1
        }
        return body.joined(separator: "\n") + "\n"
    }
}

/// A copy of the project's scripts and Makefile under a private (0700) folder, the way a clone sits in
/// root's home directory, where `make run` and `make demo` run for real. The afterimage binary is the test
/// run's own build (`AFTERIMAGE_BINARY`), so no release build is needed.
final class PrivateClone: @unchecked Sendable {
    // Touched only by the test that owns it.
    let home: String
    let root: String
    /// Where scripts/pg.sh keeps the cluster when `postgres` cannot reach the clone (a folder it can reach).
    let relocated: String
    let s3Port = freePort(count: 12)
    let httpPort: Int
    let pgPort: Int
    var extraEnvironment: [String: String] = [:]
    private var run: Process?
    private(set) var runLogPath: String
    /// Every start's log, removed by `destroy`.
    private var runLogs: [String] = []

    init() throws {
        // SeaweedFS takes the 12 ports from s3Port; the other two must not fall among them.
        var ports: [Int] = []
        while ports.count < 2 {
            let port = freePort()
            if !(s3Port..<(s3Port + 12)).contains(port), !ports.contains(port) { ports.append(port) }
        }
        httpPort = ports[0]
        pgPort = ports[1]
        let base = NSTemporaryDirectory() + "afterimage-firstrun-" + UUID().uuidString.prefix(8)
        home = base + "-home"
        root = home + "/afterimage"
        relocated = base + "-pg"
        runLogPath = ""
        let files = FileManager.default
        try files.createDirectory(atPath: home, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try files.createDirectory(atPath: root, withIntermediateDirectories: false)
        try files.createDirectory(atPath: relocated, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let source = TestEnvironment.repositoryRoot
        for item in ["Makefile", "scripts", "config"] {
            try files.copyItem(atPath: source.appendingPathComponent(item).path, toPath: root + "/" + item)
        }
        // The Python tools (weed, standardwebhooks) the test run already installed.
        try files.createSymbolicLink(atPath: root + "/.venv", withDestinationPath: source.appendingPathComponent(".venv").path)
    }

    var localDirectory: String { root + "/.local" }
    var credentials: String { localDirectory + "/credentials" }
    var baseURL: String { "http://127.0.0.1:\(httpPort)" }

    var environment: [String: String] {
        var environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "HOME": home,
            "AFTERIMAGE_BINARY": (try? TestEnvironment.afterimageBinary()) ?? "",
            "AFTERIMAGE_RUN_HTTP_PORT": String(httpPort),
            "AFTERIMAGE_RUN_PG_PORT": String(pgPort),
            "AFTERIMAGE_RUN_S3_PORT": String(s3Port),
            "AFTERIMAGE_PG_RELOCATE_DIR": relocated,
        ]
        environment.merge(extraEnvironment) { $1 }
        return environment
    }

    /// Runs a command in the clone to completion: (exit status, stdout and stderr together).
    func execute(
        _ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
        timeout: Duration = .seconds(120)
    ) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        process.environment = environment.merging(extra) { $1 }
        let logPath = NSTemporaryDirectory() + "afterimage-firstrun-cmd-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try launchWithDefaultSignals(process)
        do {
            try waitUntil(timeout: timeout, pollEvery: .milliseconds(50), "\(arguments.joined(separator: " ")) to finish") { !process.isRunning }
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw error
        }
        try? log.close()
        return (process.terminationStatus, (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
    }

    /// `sh -c SCRIPT` in the clone (README snippets).
    func shell(_ script: String, environment extra: [String: String] = [:]) throws -> (Int32, String) {
        try execute("/bin/sh", ["-c", script], environment: extra)
    }

    /// `make run` in the background, as a user starts it; returns once `/readyz` answers 200.
    func startRun() throws {
        precondition(run == nil, "make run is already running")
        runLogPath = NSTemporaryDirectory() + "afterimage-firstrun-run-\(UUID().uuidString).log"
        runLogs.append(runLogPath)
        _ = FileManager.default.createFile(atPath: runLogPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/make")
        process.arguments = ["run"]
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        process.environment = environment
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: runLogPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try launchWithDefaultSignals(process)
        run = process
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.connectTimeout = .seconds(2)
        options.totalTimeout = .seconds(5)
        do {
            try waitUntil(timeout: .seconds(180), pollEvery: .milliseconds(200), "make run to serve /readyz") {
                guard process.isRunning else { throw TestSupportError("make run exited \(process.terminationStatus)") }
                return (try? CurlSession().perform(CurlRequest(url: baseURL + "/readyz"), options: options))?.status == 200
            }
        } catch {
            throw TestSupportError("\(error); make run's output:\n\(runLog)")
        }
    }

    var runLog: String { (try? String(contentsOfFile: runLogPath, encoding: .utf8)) ?? "" }

    /// Stops `make run` as a terminal's Ctrl-C would end it (make passes SIGTERM on to run.sh, whose trap
    /// stops the daemon, SeaweedFS and PostgreSQL) and waits for it; returns make's exit status.
    @discardableResult
    func stopRun() throws -> Int32 {
        guard let process = run else { return 0 }
        run = nil
        process.terminate()
        do {
            try waitUntil(timeout: .seconds(90), "make run to stop") { !process.isRunning }
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestSupportError("make run did not stop within 90 s of SIGTERM; output:\n\(runLog)")
        }
        return process.terminationStatus
    }

    /// Stops whatever is left (after a failed test too) and removes every file the test made.
    func destroy() {
        _ = try? stopRun()
        let scripts = TestEnvironment.scriptsDirectory.path
        _ = try? runCommand("/bin/bash", [scripts + "/s3.sh", "stop", localDirectory + "/s3"])
        if FileManager.default.fileExists(atPath: localDirectory + "/pg") {
            _ = try? runCommand("/bin/bash", [scripts + "/pg.sh", "stop", localDirectory + "/pg"])
        }
        for path in [home, relocated] + runLogs { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// The two calls the first-run tests make to the daemon and the bucket.
enum FirstRunHTTP {
    static func get(_ url: String, headers: [(String, String)] = []) throws -> CurlResponse {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(15)
        return try CurlSession().perform(CurlRequest(url: url, headers: headers), options: options)
    }
}
