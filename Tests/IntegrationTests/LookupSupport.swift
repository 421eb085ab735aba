import Curl
import Foundation
import MicroHTTP
import PQ
import Primitives
import TestSupport
import Testing

/// Talks to the lookup API of a test daemon over its port, or to a `Router` in-process (`respond(to:)`,
/// no daemon, no socket), keeping every exchange on disk so that `validateCaptured` can check each real
/// response against openapi.yaml.
final class LookupClient: @unchecked Sendable {
    // Owned by one test; `counter` only advances on that test's thread.
    enum Transport {
        case socket(port: Int)
        case router(Router)
    }

    let transport: Transport
    let token: String?
    let captureDirectory: String
    private var counter = 0

    init(port: Int, token: String?) throws {
        transport = .socket(port: port)
        self.token = token
        captureDirectory = NSTemporaryDirectory() + "afterimage-openapi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: captureDirectory, withIntermediateDirectories: true)
    }

    init(router: Router, token: String?) throws {
        transport = .router(router)
        self.token = token
        captureDirectory = NSTemporaryDirectory() + "afterimage-openapi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: captureDirectory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: captureDirectory) }

    static var httpOptions: CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(30)
        return options
    }

    /// `authorization`: nil sends `Bearer <token>` when the client has one; "" sends no header at all.
    @discardableResult
    func send(
        _ method: String = "GET", _ path: String, authorization: String? = nil,
        headers: [(String, String)] = [], body: [UInt8] = []
    ) throws -> LookupAnswer {
        var all = headers
        let auth = authorization ?? token.map { "Bearer \($0)" } ?? ""
        if !auth.isEmpty { all.append(("Authorization", auth)) }
        let answer: LookupAnswer
        switch transport {
        case .socket(let port):
            let response = try CurlSession().perform(
                CurlRequest(
                    method: method, url: "http://127.0.0.1:\(port)\(path)", headers: all,
                    body: body.isEmpty ? .none : .bytes(body)),
                options: Self.httpOptions)
            answer = LookupAnswer(status: response.status, headers: response.headers, body: response.body)
        case .router(let router):
            let request = Request(method: method, target: path, headers: Dictionary(all, uniquingKeysWith: { $1 }), body: body)
            let response = try router.respond(to: request)
            answer = LookupAnswer(status: response.status, headers: HTTPHeaders(response.headers), body: response.body)
        }
        try capture(method: method, path: path, response: answer)
        return answer
    }

    func json(_ response: LookupAnswer) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw TestSupportError("not a JSON object: \(String(decoding: response.body, as: UTF8.self))")
        }
        return object
    }

    func errorCode(_ response: LookupAnswer) -> String? {
        ((try? json(response))?["error"] as? [String: Any])?["code"] as? String
    }

    private func capture(method: String, path: String, response: LookupAnswer) throws {
        counter += 1
        var headers: [String: String] = [:]
        for (name, value) in response.headers.all { headers[name.lowercased()] = value }
        let exchange: [String: Any] = [
            "method": method, "path": path, "status": response.status, "headers": headers,
            "body": String(decoding: response.body, as: UTF8.self),
        ]
        let data = try JSONSerialization.data(withJSONObject: exchange)
        try data.write(to: URL(fileURLWithPath: captureDirectory + String(format: "/%04d.json", counter)))
    }

    /// Runs scripts/validate-openapi.py (the project's .venv, from scripts/setup.sh) on everything sent so
    /// far: the spec must be valid and every response must match it.
    func validateCaptured() throws {
        let root = TestEnvironment.repositoryRoot
        let python = root.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestSupportError("\(python) is missing: run scripts/setup.sh (make test does) to install the OpenAPI validator")
        }
        try runCommand(
            python,
            [
                root.appendingPathComponent("scripts/validate-openapi.py").path,
                root.appendingPathComponent("openapi.yaml").path, captureDirectory,
            ])
    }

    /// GET of a presigned URL, straight to the bucket, without any credentials of ours.
    static func fetch(_ url: String) throws -> CurlResponse {
        try CurlSession().perform(CurlRequest(url: url), options: httpOptions)
    }
}

/// One answer of the lookup API, however it travelled.
struct LookupAnswer {
    let status: Int
    let headers: HTTPHeaders
    let body: [UInt8]
}

/// Percent-encodes one path segment completely (everything but RFC 3986 unreserved characters).
func pathSegment(_ value: String) -> String {
    value.addingPercentEncoding(
        withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? value
}

/// A random token of the kind an operator would generate.
func randomToken() -> String {
    "tok_" + Hex.encode((0..<24).map { _ in UInt8.random(in: 0...255) })
}

/// Rows written directly, for tests that need predictions and assets in chosen states.
struct Seeder {
    let databaseURL: String

    func prediction(_ id: String, provider: String = "replicate", status: String = "succeeded") throws {
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        try connection.execute(
            """
            INSERT INTO predictions (provider, id, status, model, version, input, created_at, completed_at)
            VALUES ($1, $2, $3, 'test/model', 'v1', '{"prompt": "a \\"quoted\\" cat", "n": 2}', now() - interval '1 minute', now())
            """, [provider, id, status])
    }

    struct Asset {
        var state = "stored"
        var key: String?
        var sourceURL = "http://127.0.0.1:9/unused"
        var size: Int64?
        var sha256: String?
        var contentType: String? = "image/png"
        var failureReason: String?
        var nextAttemptInSeconds = 0
        var spoolPath: String?
        var spoolSize: Int64?
    }

    /// An asset row written directly; returns its id.
    @discardableResult
    func asset(predictionID: String, index: Int, provider: String = "replicate", _ asset: Asset) throws -> Int64 {
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        let row = try connection.query(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, size_bytes, sha256,
                                content_type, failure_reason, last_error, next_attempt_at, deadline, spool_path, spool_size, spool_sha256,
                                stored_at, attempts)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, now() + make_interval(secs => $12), now() + interval '1 hour',
                    $13, $14, CASE WHEN $13::text IS NULL THEN NULL ELSE repeat('0', 64) END,
                    CASE WHEN $6 = 'stored' THEN now() END, CASE WHEN $6 IN ('failed', 'expired') THEN 5 ELSE 0 END)
            RETURNING id
            """,
            [
                provider, predictionID, "/\(index)", index, asset.sourceURL, asset.state, asset.key, asset.size, asset.sha256,
                asset.contentType, asset.failureReason, asset.nextAttemptInSeconds, asset.spoolPath, asset.spoolSize,
            ]
        ).first
        return try #require(row).decode(0, as: Int64.self)
    }
}

extension ArchiveHarness {
    typealias SeededAsset = Seeder.Asset

    func seedPrediction(_ id: String, provider: String = "replicate", status: String = "succeeded") throws {
        try Seeder(databaseURL: databaseURL).prediction(id, provider: provider, status: status)
    }

    @discardableResult
    func seedAsset(predictionID: String, index: Int, provider: String = "replicate", _ asset: SeededAsset) throws -> Int64 {
        try Seeder(databaseURL: databaseURL).asset(predictionID: predictionID, index: index, provider: provider, asset)
    }
}
