import Curl
import Foundation
import Glibc
import Synchronization
import TestSupport

/// `afterimage` run as a real child process, the way systemd or `make run` runs it. Its stderr goes to
/// a file the test can read (to check for leaked secrets, for instance).
final class DaemonProcess: @unchecked Sendable {
    // `process` is only touched by the test that owns this object.
    let process = Process()
    let logPath: String
    let port: Int

    init(arguments: [String] = ["serve"], environment: [String: String], port: Int) throws {
        self.port = port
        logPath = NSTemporaryDirectory() + "afterimage-daemon-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.afterimageBinary())
        process.arguments = arguments
        // Only what the test gives: no AFTERIMAGE_* from the developer's shell leaks in.
        process.environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
            .merging(environment) { $1 }
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try launchWithDefaultSignals(process)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// GET on the daemon's port; nil when nothing answers yet.
    func get(_ path: String) -> CurlResponse? {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.connectTimeout = .seconds(2)
        options.totalTimeout = .seconds(10)
        return try? CurlSession().perform(CurlRequest(url: "http://127.0.0.1:\(port)\(path)"), options: options)
    }

    func waitForStatus(_ path: String, _ status: Int, timeout: Duration = .seconds(30)) throws -> CurlResponse {
        var last: CurlResponse?
        do {
            try waitUntil(timeout: timeout, pollEvery: .milliseconds(100), "\(path) to answer \(status)") {
                guard process.isRunning else { throw TestSupportError("daemon exited: \(log)") }
                last = get(path)
                return last?.status == status
            }
        } catch {
            throw TestSupportError(
                "\(error); last answer \(last.map { "\($0.status) \(String(decoding: $0.body, as: UTF8.self))" } ?? "none"); log:\n\(log)")
        }
        return last!
    }

    /// SIGTERM, then the exit status (SIGKILL and a failure after `timeout`).
    @discardableResult
    func stop(timeout: Duration = .seconds(20)) throws -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        do {
            try waitUntil(timeout: timeout, "daemon to exit") { !process.isRunning }
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestSupportError("daemon did not exit within \(timeout) of SIGTERM")
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

/// Runs the binary to completion: (exit status, stdout, stderr).
func runAfterimage(_ arguments: [String], environment: [String: String]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try TestEnvironment.afterimageBinary())
    process.arguments = arguments
    process.environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try launchWithDefaultSignals(process)
    // Read both pipes before waiting so a chatty child never blocks on a full pipe.
    let errData = Mutex<Data>(Data())
    let reader = Thread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try waitUntil(timeout: .seconds(10), "stderr drained") { errData.withLock { _ in true } && !reader.isExecuting }
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData.withLock { $0 }, as: UTF8.self))
}
