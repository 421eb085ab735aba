import Crypto
import Curl
import Foundation
import TestSupport

/// Tests/Fakes/fake_provider.py run as a child process: output files with scripted behaviour, and
/// per-path request counters.
final class FakeProvider: @unchecked Sendable {
    // `process` is touched only by the owning test.
    let process = Process()
    let port: Int

    init() throws {
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("Tests/Fakes/fake_provider.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try launchWithDefaultSignals(process)
        // The first line is "PORT n"; read byte by byte so nothing after it is consumed.
        var line = [UInt8]()
        while let byte = try out.fileHandleForReading.read(upToCount: 1)?.first, byte != 10 { line.append(byte) }
        guard let port = Int(String(decoding: line, as: UTF8.self).replacingOccurrences(of: "PORT ", with: "")) else {
            throw TestSupportError("fake provider did not start")
        }
        self.port = port
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }

    func url(_ name: String, _ query: String = "") -> String {
        "http://127.0.0.1:\(port)/files/\(name)\(query.isEmpty ? "" : "?" + query)"
    }

    struct Stats: Decodable {
        let counts: [String: Int]
        let active: [String: Int]
        let started: [String: Int]
    }

    func stats() throws -> Stats {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        let response = try CurlSession().perform(CurlRequest(url: "http://127.0.0.1:\(port)/_stats"), options: options)
        return try JSONDecoder().decode(Stats.self, from: Data(response.body))
    }

    func count(_ name: String) throws -> Int { try stats().counts["/files/\(name)"] ?? 0 }

    /// The bytes the fake serves for `name`: blocks of sha256("name:i"), cut to `size`.
    static func bytes(_ name: String, size: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(size + 32)
        var index = 0
        while out.count < size {
            out.append(contentsOf: SHA256.hash(data: Data("\(name):\(index)".utf8)))
            index += 1
        }
        return Array(out.prefix(size))
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
