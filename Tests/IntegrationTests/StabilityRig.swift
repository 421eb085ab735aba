import Curl
import Foundation
import PQ
import S3
import TestSupport
import Testing

@testable import Afterimage

/// A daemon wired for Stability: its own webhook secret (not Replicate's), the fake results API as
/// `stability.base_url`, and helpers to post, wait and compare what was stored.
final class StabilityRig: @unchecked Sendable {
    // Owned by one test at a time.
    let harness: ArchiveHarness
    let fake: FakeStability
    let secret = "whsec_" + Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()

    /// `keyCount` API keys, all configured (comma-separated, as in the environment).
    init(keyCount: Int = 1) throws {
        harness = try ArchiveHarness()
        fake = try FakeStability(keyCount: keyCount)
    }

    func environment(extra: [String: String] = [:]) -> [String: String] {
        [
            "AFTERIMAGE_STABILITY_WEBHOOK_SECRET": secret,
            "AFTERIMAGE_STABILITY_API_KEY": fake.apiKeys.joined(separator: ","),
            "AFTERIMAGE_STABILITY_BASE_URL": fake.baseURL,
        ].merging(extra) { $1 }
    }

    func startDaemon(extra: [String: String] = [:], spool: String? = nil) throws -> DaemonProcess {
        try harness.startDaemon(extra: environment(extra: extra), spool: spool)
    }

    @discardableResult
    func post(_ body: [UInt8], to daemon: DaemonProcess, webhookID: String = "msg_\(UUID().uuidString)", secret: String? = nil) throws -> CurlResponse
    {
        try harness.post(body, to: daemon, webhookID: webhookID, secret: secret ?? self.secret, route: "/v1/webhooks/stability")
    }

    func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixturePath(name))))
    }

    static func fixturePath(_ name: String) -> String {
        TestEnvironment.fixturesDirectory.appendingPathComponent("stability/\(name)").path
    }

    /// A fixture's JSON as an object.
    func fixtureJSON(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(try fixture(name))) as? [String: Any] ?? [:]
    }

    static func json(_ response: CurlResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    struct Asset {
        let id: Int64
        let predictionID: String
        let pointer: String
        let state: String
        let key: String?
        let sha256: String?
        let size: Int64?
        let contentType: String?
        let finishReason: String?
        let seed: Int64?
        let sourceKind: String
        let failureReason: String?
    }

    func assets(predictionID: String? = nil) throws -> [Asset] {
        let connection = try harness.connection()
        defer { connection.close() }
        return try connection.query(
            """
            SELECT id, prediction_id, pointer, state, storage_key, sha256, size_bytes, content_type, finish_reason, seed,
                   source_kind, failure_reason
            FROM assets WHERE provider = 'stability' AND ($1::text IS NULL OR prediction_id = $1) ORDER BY id
            """, [predictionID]
        ).map { row in
            Asset(
                id: try row.decode(0), predictionID: try row.decode(1), pointer: try row.decode(2), state: try row.decode(3),
                key: try row.decode(4), sha256: try row.decode(5), size: try row.decode(6), contentType: try row.decode(7),
                finishReason: try row.decode(8), seed: try row.decode(9), sourceKind: try row.decode(10),
                failureReason: try row.decode(11))
        }
    }

    /// The stored object equals `expected`, both through the S3 API and through a presigned GET URL (what
    /// the lookup API hands out).
    func expectStored(_ asset: Asset, equals expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(asset.state == "stored", sourceLocation: sourceLocation)
        let key = try #require(asset.key, sourceLocation: sourceLocation)
        #expect(key.hasPrefix("\(harness.prefix)stability/\(asset.predictionID)/"), sourceLocation: sourceLocation)
        #expect(asset.sha256 == FakeProvider.sha256Hex(expected), sourceLocation: sourceLocation)
        #expect(asset.size == Int64(expected.count), sourceLocation: sourceLocation)
        let storage = try harness.storage()
        var object: [UInt8] = []
        _ = try storage.getObject(key: key) { object.append(contentsOf: $0) }
        #expect(object == expected, "object bytes differ", sourceLocation: sourceLocation)
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.maxBytes = 64 << 20
        options.totalTimeout = .seconds(30)
        let presigned = try CurlSession().perform(CurlRequest(url: storage.presignedGetURL(key: key, expires: 300)), options: options)
        #expect(presigned.status == 200, sourceLocation: sourceLocation)
        #expect(presigned.body == expected, "presigned GET bytes differ", sourceLocation: sourceLocation)
    }

    /// Peak and current resident memory of a process, in KiB (VmHWM, VmRSS from /proc/PID/status).
    static func memory(pid: Int32) throws -> (peak: Int, current: Int) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return (field("VmHWM"), field("VmRSS"))
    }
}
