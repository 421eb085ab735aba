import Crypto
import Curl
import Foundation
import Primitives
import TestSupport

/// Tests/Fakes/fake_provider.py run as a child process: output files with scripted behaviour, and
/// per-path request counters.
final class FakeProvider: @unchecked Sendable {
    private let server: PythonFake
    var port: Int { server.port }
    /// The loopback address it listens on (127.0.0.1, or another such as 127.0.0.2 for a second host).
    let host: String

    init(host: String = "127.0.0.1") throws {
        self.host = host
        server = try PythonFake(script: "fake_provider.py", arguments: ["0", host])
    }

    func url(_ name: String, _ query: String = "") -> String {
        "http://\(host):\(port)/files/\(name)\(query.isEmpty ? "" : "?" + query)"
    }

    struct Stats: Decodable {
        let counts: [String: Int]
        let active: [String: Int]
        let started: [String: Int]
        /// Per path, the Authorization header of each request ("" when none was sent).
        let authorization: [String: [String]]
    }

    func stats() throws -> Stats {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        let response = try CurlSession().perform(CurlRequest(url: "http://\(host):\(port)/_stats"), options: options)
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
        Hex.encode(SHA256.hash(data: bytes))
    }
}
