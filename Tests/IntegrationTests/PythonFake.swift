import Foundation
import TestSupport

/// A fake server from Tests/Fakes/*.py run as a child process. Each script prints "PORT n" as its first
/// line once it listens; the process ends with the owning object.
final class PythonFake: @unchecked Sendable {
    // `process` is touched only by the owning test.
    let process = Process()
    let port: Int

    init(script name: String, arguments: [String] = []) throws {
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("Tests/Fakes/\(name)").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try launchWithDefaultSignals(process)
        // Read byte by byte so nothing after the first line is consumed.
        var line = [UInt8]()
        while line.count < 64, let byte = try out.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { line.append(byte) }
        guard let port = Int(String(decoding: line, as: UTF8.self).replacingOccurrences(of: "PORT ", with: "")) else {
            process.terminate()
            throw TestSupportError("\(name) did not start")
        }
        self.port = port
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}
