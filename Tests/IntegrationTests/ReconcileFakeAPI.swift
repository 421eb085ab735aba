import Curl
import Foundation
import TestSupport

/// Tests/Fakes/fake_replicate_api.py run as a child process: Replicate's prediction list and get
/// endpoints over predictions a test loads, with scripted 429s, 5xx, gated pages and request counters.
final class FakeReplicateAPI: @unchecked Sendable {
    private let server: PythonFake
    var port: Int { server.port }
    let token = "r8_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
    /// What `GET /v1/webhooks/default/secret` answers as `key`.
    let webhookSecret = "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()

    init() throws {
        server = try PythonFake(script: "fake_replicate_api.py", arguments: [])
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Replaces the fake's predictions (newest first) and script, and clears its counters.
    func load(
        _ predictions: [[String: Any]], pageSize: Int = 100, current: [String: [String: Any]] = [:],
        script: [String: Any] = [:]
    ) throws {
        var body: [String: Any] = [
            "token": token, "webhook_secret": webhookSecret, "page_size": pageSize, "predictions": predictions, "current": current,
            "throttle_first": 0, "fail_first": 0, "gate_pages": [Int](), "next_origin": NSNull(),
        ]
        body.merge(script) { $1 }
        try post("/_load", Array(try JSONSerialization.data(withJSONObject: body)))
    }

    /// Lets requests waiting at a gated page go on.
    func openGates() throws { try post("/_open", Array("{}".utf8)) }

    struct Stats: Decodable {
        let list: Int
        let pages: [String: Int]
        let get: [String: Int]
        let unauthorized: Int
        let throttled: Int
        let failed: Int
        let waiting: Int
        let times: [Double]
        /// Requests for the webhook signing secret (absent until the first).
        let secret: Int?
    }

    func stats() throws -> Stats {
        let response = try CurlSession().perform(CurlRequest(url: "\(baseURL)/_stats"), options: Self.options)
        return try JSONDecoder().decode(Stats.self, from: Data(response.body))
    }

    private func post(_ path: String, _ body: [UInt8]) throws {
        let response = try CurlSession().perform(
            CurlRequest(method: "POST", url: "\(baseURL)\(path)", headers: [("Content-Type", "application/json")], body: .bytes(body)),
            options: Self.options)
        guard response.status == 200 else { throw TestSupportError("fake API \(path) answered \(response.status)") }
    }

    private static var options: CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(10)
        return options
    }
}
