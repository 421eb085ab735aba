import Curl
import Foundation
import TestSupport

/// Tests/Fakes/fake_stability.py run as a child process: `GET /v2beta/results/{id}` and
/// `/v2beta/audio/results/{id}` scripted per id (`202,202,200`, `404`, ...), checking the bearer key
/// (a result answers only its owner key; other keys get 404), logging every request.
final class FakeStability: @unchecked Sendable {
    private let server: PythonFake
    var port: Int { server.port }
    /// The keys the fake accepts; results belong to the first unless scripted otherwise.
    let apiKeys: [String]
    var apiKey: String { apiKeys[0] }

    init(keyCount: Int = 1) throws {
        apiKeys = (0..<keyCount).map { _ in "sk-test-\(UUID().uuidString)" }
        server = try PythonFake(script: "fake_stability.py", arguments: [apiKeys.joined(separator: ",")])
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    private func session() -> (CurlSession, CurlOptions) {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(10)
        return (CurlSession(), options)
    }

    /// Scripts the answers for `id`, one per request, the last one repeating.
    /// `owner` is the index of the key that created the result; `kind` is "image" or "audio" (the path it
    /// answers at); `format` "json" answers `{jsonField: base64, ...}` whatever the Accept header;
    /// `bodyFile` / `inProgressFile` are fixtures served as the 200 / 202 body.
    func script(
        _ id: String, _ steps: String, size: Int = 2048, type: String = "image/png",
        finishReason: String = "SUCCESS", seed: Int64 = 0, retryAfter: Int? = nil, owner: Int = 0,
        kind: String = "image", format: String = "bytes", jsonField: String = "result",
        bodyFile: String? = nil, inProgressFile: String? = nil
    ) throws {
        var spec: [String: Any] = [
            "id": id, "script": steps, "size": size, "type": type, "finish_reason": finishReason, "seed": String(seed),
            "owner": apiKeys[owner], "kind": kind, "format": format, "json_field": jsonField,
        ]
        if let retryAfter { spec["retry_after"] = String(retryAfter) }
        if let bodyFile { spec["body_file"] = bodyFile }
        if let inProgressFile { spec["in_progress_file"] = inProgressFile }
        let (session, options) = session()
        let response = try session.perform(
            CurlRequest(
                method: "POST", url: "\(baseURL)/_script", headers: [("Content-Type", "application/json")],
                body: .bytes(Array(try JSONSerialization.data(withJSONObject: spec)))), options: options)
        guard response.status == 200 else { throw TestSupportError("scripting the fake failed: \(response.status)") }
    }

    struct Stats: Decodable {
        let counts: [String: Int]
        let unauthorized: Int
        let requests: [Request]
    }

    /// One request the fake answered: `key` is the index of the key it carried (-1: none of them), `at`
    /// the fake's monotonic clock in seconds, `wall` seconds since 1970.
    struct Request: Decodable {
        let id: String
        let path: String
        let key: Int
        let accept: String?
        let status: Int
        let at: Double
        let wall: Double
    }

    func requests(_ id: String) throws -> [Request] { try stats().requests.filter { $0.id == id } }

    func stats() throws -> Stats {
        let (session, options) = session()
        let response = try session.perform(CurlRequest(url: "\(baseURL)/_stats"), options: options)
        return try JSONDecoder().decode(Stats.self, from: Data(response.body))
    }

    func count(_ id: String) throws -> Int { try stats().counts[id] ?? 0 }

    /// The bytes the fake serves for `id`.
    static func bytes(_ id: String, size: Int) -> [UInt8] { FakeProvider.bytes(id, size: size) }
}
