import Foundation
import Glibc
import TestSupport

/// A Debian 12 booted with systemd as PID 1 by `systemd-nspawn`, for testing the unit under a real
/// service manager. The root is scripts/nspawn.sh's cached debootstrap (no Swift in it), mounted
/// read-only under a throwaway overlay (`--volatile=overlay`), so every test starts from the same
/// clean system and leaves nothing behind. The container shares the host's network: the daemon in it
/// reaches the test run's PostgreSQL, SeaweedFS and fake providers on 127.0.0.1, and the test reaches
/// the daemon's socket the same way. Commands run inside through `nsenter` into the init's namespaces
/// (the host has no machined to ask).
final class NspawnContainer: @unchecked Sendable {
    // Set once in init; `process` is touched only by the owning test.
    let machine: String
    /// The container's systemd (PID 1 inside), as the host sees it.
    let leader: pid_t
    private let process: Process
    private let logPath: String

    /// The container's file system, from the host: `make install DESTDIR=` writes here.
    var rootPath: String { "/proc/\(leader)/root" }

    /// The cached root, or an error that says why there is none (scripts/test.sh sets these).
    static func image() throws -> String {
        if let reason = ProcessInfo.processInfo.environment["AFTERIMAGE_NSPAWN_UNAVAILABLE"], !reason.isEmpty {
            throw TestSupportError("this machine cannot run the systemd container: \(reason)")
        }
        guard let root = ProcessInfo.processInfo.environment["AFTERIMAGE_NSPAWN_ROOT"], !root.isEmpty else {
            throw TestSupportError(
                """
                AFTERIMAGE_NSPAWN_ROOT is not set: run `make test` (scripts/test.sh), which builds the container \
                root with scripts/nspawn.sh when the run includes NspawnServiceTests
                """)
        }
        return root
    }

    /// `make build CONFIGURATION=debug`'s binary (Swift runtime linked in), which scripts/test.sh exports.
    static func installableBinary() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["AFTERIMAGE_STATIC_BINARY"], !path.isEmpty else {
            throw TestSupportError("AFTERIMAGE_STATIC_BINARY is not set: run `make test`, which builds it with `make build CONFIGURATION=debug`")
        }
        guard FileManager.default.isExecutableFile(atPath: path) else { throw TestSupportError("\(path) is not an executable") }
        return path
    }

    /// Boots the container and waits until systemd reports the system up.
    init(image: String) throws {
        try runCommand("/bin/bash", [TestEnvironment.scriptsDirectory.appendingPathComponent("nspawn.sh").path, "check"])
        machine = "afterimage-\(UUID().uuidString.prefix(8).lowercased())"
        logPath = NSTemporaryDirectory() + "\(machine).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let nspawn = Process()
        nspawn.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-nspawn")
        // --register=no --keep-unit: the host's PID 1 is not systemd, so there is no machined to
        // register with and no scope to create; the container runs in the test's own cgroup.
        nspawn.arguments = [
            "--quiet", "--register=no", "--keep-unit", "--volatile=overlay", "--directory=\(image)",
            "--machine=\(machine)", "--console=pipe", "--boot",
        ]
        nspawn.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        nspawn.standardInput = FileHandle.nullDevice
        nspawn.standardOutput = FileHandle(forWritingAtPath: logPath)
        nspawn.standardError = FileHandle(forWritingAtPath: logPath)
        try launchWithDefaultSignals(nspawn)

        var found: pid_t = 0
        do {
            try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(50), "the container's systemd to start") {
                guard nspawn.isRunning else { throw TestSupportError("systemd-nspawn exited") }
                found = Self.initProcess(under: nspawn.processIdentifier) ?? 0
                return found > 0
            }
        } catch {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if nspawn.isRunning { nspawn.terminate() }
            throw TestSupportError("the container did not boot (\(error)); systemd-nspawn said:\n\(log)")
        }
        leader = found
        process = nspawn
        // `--wait` waits while systemd boots, but fails at once ("offline", "Failed to connect to bus")
        // until its control socket exists: ask again until it answers.
        let up = ["running", "degraded"]
        var booted = Result(status: -1, output: "")
        let deadline = ContinuousClock.now + .seconds(90)
        repeat {
            booted = execute(["systemctl", "is-system-running", "--wait"], timeout: 90)
            if up.contains(booted.output.trimmingCharacters(in: .whitespacesAndNewlines)) { break }
            Thread.sleep(forTimeInterval: 0.1)
        } while ContinuousClock.now < deadline && process.isRunning
        guard up.contains(booted.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            let failed = execute(["systemctl", "--failed", "--no-legend"]).output
            shutdown()
            throw TestSupportError("the container's systemd did not come up: \(booted.output); failed units: \(failed); nspawn:\n\(log)")
        }
    }

    /// The child of systemd-nspawn that runs /usr/lib/systemd/systemd (nspawn's short-lived
    /// intermediate children are skipped).
    private static func initProcess(under parent: pid_t) -> pid_t? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(parent)/task") else { return nil }
        for task in tasks {
            let children = (try? String(contentsOfFile: "/proc/\(parent)/task/\(task)/children", encoding: .utf8)) ?? ""
            for child in children.split(separator: " ").compactMap({ pid_t($0) }) {
                let command = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? ""
                if command.trimmingCharacters(in: .whitespacesAndNewlines) == "systemd" { return child }
            }
        }
        return nil
    }

    struct Result: Sendable {
        let status: Int32
        let output: String
    }

    /// Runs a command inside the container (its mount, PID, network and other namespaces), bounded by
    /// `timeout` seconds (coreutils' timeout answers 124 then). Never throws on a non-zero exit.
    func execute(_ command: [String], timeout: Int = 120) -> Result {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        child.arguments = ["--kill-after=5", String(timeout), "/usr/bin/nsenter", "--target=\(leader)", "--all", "--"] + command
        child.environment = [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
            "LANG": "C.UTF-8",
        ]
        let outputPath = NSTemporaryDirectory() + "\(machine)-cmd-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = FileHandle(forWritingAtPath: outputPath)
        child.standardOutput = output
        child.standardError = output
        child.standardInput = FileHandle.nullDevice
        do {
            try launchWithDefaultSignals(child)
        } catch {
            return Result(status: -1, output: "cannot run nsenter: \(error)")
        }
        child.waitUntilExit()
        try? output?.close()
        return Result(status: child.terminationStatus, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// `execute`, throwing with the command's output when it fails.
    @discardableResult
    func run(_ command: [String], timeout: Int = 120) throws -> String {
        let result = execute(command, timeout: timeout)
        guard result.status == 0 else {
            throw TestSupportError("in the container, `\(command.joined(separator: " "))` exited \(result.status): \(result.output)")
        }
        return result.output
    }

    /// One property of a unit (`systemctl show --value`).
    func property(_ unit: String, _ name: String) throws -> String {
        try run(["systemctl", "show", "--value", "--property=\(name)", unit]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes a file inside the container (parents made as needed).
    func write(_ path: String, _ contents: String, mode: Int = 0o644) throws {
        let url = URL(fileURLWithPath: rootPath + path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }

    func remove(_ path: String) throws { try FileManager.default.removeItem(atPath: rootPath + path) }

    /// Powers the container off (nspawn turns SIGTERM into an orderly shutdown), killing it when that
    /// takes too long; the overlay and everything written goes with it.
    func shutdown() {
        guard process.isRunning else { return }
        process.terminate()
        if (try? waitUntil(timeout: .seconds(30), "the container to power off", { !process.isRunning })) == nil {
            // SIGKILL to the container's init ends its whole PID namespace.
            kill(leader, SIGKILL)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: logPath)
    }

    deinit { shutdown() }
}
