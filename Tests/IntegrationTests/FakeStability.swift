import Curl
import Foundation
import TestSupport

/// Tests/Fakes/fake_stability.py run as a child process: `GET /v2beta/results/{id}` scripted per id
/// (`202,202,200`, `404`, ...), checking the bearer key, counting requests per id.
final class FakeStability: @unchecked Sendable {
    private let server: PythonFake
    var port: Int { server.port }
    let apiKey: String

    init(apiKey: String = "sk-test-\(UUID().uuidString)") throws {
        self.apiKey = apiKey
        server = try PythonFake(script: "fake_stability.py", arguments: [apiKey])
    }


    var baseURL: String { "http://127.0.0.1:\(port)" }

    private func session() -> (CurlSession, CurlOptions) {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(10)
        return (CurlSession(), options)
    }

    /// Scripts the answers for `id`, one per request, the last one repeating.
    func script(_ id: String, _ steps: String, size: Int = 2048, type: String = "image/png",
                finishReason: String = "SUCCESS", seed: Int64 = 0, retryAfter: Int? = nil) throws {
        var spec: [String: Any] = ["id": id, "script": steps, "size": size, "type": type, "finish_reason": finishReason, "seed": String(seed)]
        if let retryAfter { spec["retry_after"] = String(retryAfter) }
        let (session, options) = session()
        let response = try session.perform(CurlRequest(method: "POST", url: "\(baseURL)/_script", headers: [("Content-Type", "application/json")],
                                                       body: .bytes(Array(try JSONSerialization.data(withJSONObject: spec)))), options: options)
        guard response.status == 200 else { throw TestSupportError("scripting the fake failed: \(response.status)") }
    }

    struct Stats: Decodable {
        let counts: [String: Int]
        let unauthorized: Int
    }

    func stats() throws -> Stats {
        let (session, options) = session()
        let response = try session.perform(CurlRequest(url: "\(baseURL)/_stats"), options: options)
        return try JSONDecoder().decode(Stats.self, from: Data(response.body))
    }

    func count(_ id: String) throws -> Int { try stats().counts[id] ?? 0 }

    /// The bytes the fake serves for `id`.
    static func bytes(_ id: String, size: Int) -> [UInt8] { FakeProvider.bytes(id, size: size) }
}
