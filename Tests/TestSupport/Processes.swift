import Foundation
import Glibc

/// Runs a command to completion and returns its combined output; throws when it exits non-zero.
/// Output goes to a temporary file, not a pipe: a server the command starts in the background (pg_ctl,
/// weed) may inherit the descriptor and would keep a pipe open for ever.
@discardableResult
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let outputPath = NSTemporaryDirectory() + "afterimage-cmd-\(UUID().uuidString).log"
    FileManager.default.createFile(atPath: outputPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    try launchWithDefaultSignals(process)
    process.waitUntilExit()
    try? output.close()
    let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    guard process.terminationStatus == 0 else {
        throw TestSupportError("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
    }
    return text
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close).
/// `count` > 1 asks for a run of consecutive free ports (SeaweedFS derives its ports from one base).
public func freePort(count: Int = 1) -> Int {
    for _ in 0..<200 {
        // A run is taken below Linux's ephemeral range (32768 and up): an outgoing connection, SeaweedFS's own
        // among them, can take a port there between this check and the server's bind.
        let base = count == 1 ? bindAndRelease(port: 0) : Int.random(in: 20000...(32767 - count))
        guard let base else { continue }
        if count == 1 { return base }
        if (base..<(base + count)).allSatisfy({ bindAndRelease(port: $0) != nil }) { return base }
    }
    fatalError("no free port run of \(count) found")
}

private func bindAndRelease(port: Int) -> Int? {
    guard let fd = try? LoopbackSocket.bound(port: port) else { return nil }
    defer { close(fd) }
    return try? LoopbackSocket.boundPort(fd)
}

/// Polls `condition` until it holds or `timeout` passes: the way tests wait, never a bare sleep.
public func waitUntil(
    timeout: Duration = .seconds(10), pollEvery: Duration = .milliseconds(20),
    _ what: String = "condition", _ condition: () throws -> Bool
) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: Double(pollEvery.components.attoseconds) / 1e18 + Double(pollEvery.components.seconds))
    }
    if try condition() { return }
    throw TestSupportError("timed out after \(timeout) waiting for \(what)")
}

/// Starts `process` with no signal blocked. A child inherits the spawning thread's signal mask, and the
/// test runner's threads block most signals: without this a child never sees SIGTERM and tests hang.
public func launchWithDefaultSignals(_ process: Process) throws {
    var empty = sigset_t()
    sigemptyset(&empty)
    var previous = sigset_t()
    pthread_sigmask(SIG_SETMASK, &empty, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}
