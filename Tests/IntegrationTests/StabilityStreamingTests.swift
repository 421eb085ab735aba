import Crypto
import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Genuinely signed large Stability bodies (issue 13, point 2): a body spilled to disk while it arrived is
/// handed to intake as its file, decoded into the spool and copied to `deliveries.body` in pieces, so
/// recording it costs no copy of it in memory. And the spool sweep never takes an intake's files.
@Suite("Stability: signed large bodies stream from their spill file", .serialized)
struct StabilityStreamingTests {
    /// Distinct bytes per body without hashing 45 MiB in the test (an LCG).
    static func raw(_ seed: UInt64, size: Int) -> [UInt8] {
        var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            for index in 0..<size {
                if index & 7 == 0 { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
                buffer[index] = UInt8(truncatingIfNeeded: state >> ((index & 7) * 8))
            }
            count = size
        }
    }

    /// `{"image": base64, "seed": …, "finish_reason": "SUCCESS"}`, the base64 with `\/` escapes (as JSON
    /// encoders that escape slashes write it) so that the streamed unescaping is exercised too.
    static func body(_ raw: [UInt8], seed: Int) -> [UInt8] {
        var body = Array(#"{"finish_reason": "SUCCESS", "seed": \#(seed), "image": ""#.utf8)
        for byte in Data(raw).base64EncodedData() {
            if byte == UInt8(ascii: "/") { body += [UInt8(ascii: "\\"), byte] } else { body.append(byte) }
        }
        body += Array(#""}"#.utf8)
        return body
    }

    /// A signed POST that waits as long as it takes: four 60 MiB bodies recorded at once by a debug build on
    /// a shared 2-core machine can keep the answer away longer than curl's default 30 s of silence.
    static func post(_ body: [UInt8], to daemon: DaemonProcess, webhookID: String, secret: String) throws -> CurlResponse {
        let timestamp = Int64(Date().timeIntervalSince1970)
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(300)
        options.lowSpeedTime = .seconds(300)
        return try CurlSession().perform(
            CurlRequest(
                method: "POST", url: "http://127.0.0.1:\(daemon.port)/v1/webhooks/stability",
                headers: [
                    ("Content-Type", "application/json"), ("webhook-id", webhookID), ("webhook-timestamp", String(timestamp)),
                    ("webhook-signature", StandardWebhooksVerifier.sign(secret: secret, id: webhookID, timestamp: timestamp, body: body)),
                ],
                body: .bytes(body)), options: options)
    }

    @Test func fourSignedSixtyMiBBodiesAtOnceAreRecordedWithoutGrowingTheDaemon() throws {
        let rig = try StabilityRig()
        let daemon = try rig.startDaemon(extra: ["AFTERIMAGE_WORKERS_COUNT": "0", "AFTERIMAGE_LOG_LEVEL": "warning"])
        let pid = daemon.process.processIdentifier
        // Warm up: connections made, code paths touched.
        #expect(try rig.post(try rig.fixture("v2beta-image.json"), to: daemon).status == 200)
        let raws = (0..<4).map { Self.raw(UInt64($0) + 1, size: 44 << 20) }
        let bodies = raws.enumerated().map { Self.body($0.element, seed: $0.offset) }
        #expect(bodies.allSatisfy { $0.count > 58 << 20 && $0.count < 64 << 20 })
        let idle = try HTTPAbuseTests.memory(of: pid).rss
        try HTTPAbuseTests.resetPeak(of: pid)

        let clients = bodies.enumerated().map { index, body in
            Background<Int> { try Self.post(body, to: daemon, webhookID: "msg_big_\(index)", secret: rig.secret).status }
        }
        let statuses = try clients.map { try $0.value(timeout: .seconds(300)) }
        let peak = try HTTPAbuseTests.memory(of: pid).peak
        let growth = peak - idle
        print("signed 4 x \(bodies[0].count >> 20) MiB: idle RSS \(idle >> 20) MiB, peak RSS \(peak >> 20) MiB, growth \(growth >> 20) MiB")
        #expect(statuses == [200, 200, 200, 200])
        // Before: about 2 x each body being recorded (read back, then libpq's send buffer), 480 MiB here.
        #expect(growth < 64 << 20, "peak RSS grew by \(growth >> 20) MiB above idle")

        let connection = try rig.harness.connection()
        defer { connection.close() }
        for (index, raw) in raws.enumerated() {
            let row = try #require(
                try connection.query(
                    """
                    SELECT length(d.body), a.spool_sha256, a.spool_size, a.spool_path, a.seed, a.finish_reason, md5(d.body)
                    FROM deliveries d JOIN assets a ON a.delivery_id = d.id WHERE d.webhook_id = $1
                    """, ["msg_big_\(index)"]
                ).first)
            #expect(try row.decode(0, as: Int.self) == bodies[index].count)
            #expect(try row.decode(1, as: String.self) == FakeProvider.sha256Hex(raw))
            #expect(try row.decode(2, as: Int64.self) == Int64(raw.count))
            #expect(try row.decode(4, as: Int64.self) == Int64(index))
            #expect(try row.decode(5, as: String.self) == "SUCCESS")
            #expect(
                try row.decode(6, as: String.self) == Insecure.MD5.hash(data: bodies[index]).map { String(format: "%02x", $0) }.joined(),
                "the raw body was not kept as sent")
            let path = try row.decode(3, as: String.self)
            #expect(try SHA256Hasher.hexDigest(ofFile: path, length: Int64(raw.count)) == FakeProvider.sha256Hex(raw))
        }
        try daemon.stop()
    }

    /// The sweep runs every second here, so an intake's files are a second old long before their rows are
    /// committed under this load: only their claims keep them. Every output must be stored from its spool
    /// file (never "missing", never decoded again from the delivery).
    @Test func theSpoolSweepNeverTakesAnIntakesFiles() throws {
        let rig = try StabilityRig()
        let daemon = try rig.startDaemon(extra: ["AFTERIMAGE_WORKERS_SPOOL_SWEEP_INTERVAL": "1", "AFTERIMAGE_LOG_LEVEL": "info"])
        let raws = (0..<8).map { Self.raw(UInt64($0) + 100, size: (3 << 20) + $0 * 1000) }
        let clients = raws.enumerated().map { index, raw in
            Background<Int> { try rig.post(Self.body(raw, seed: index), to: daemon).status }
        }
        #expect(try clients.map { try $0.value(timeout: .seconds(120)) } == Array(repeating: 200, count: 8))
        try rig.harness.waitForAssets("stored", count: 8, timeout: .seconds(120))
        let assets = try rig.assets()
        #expect(Set(assets.compactMap(\.sha256)) == Set(raws.map(FakeProvider.sha256Hex)))
        #expect(!daemon.log.contains("spool file of an inline result is missing"))
        #expect(!daemon.log.contains("decoding inline bytes from the recorded delivery"))
        try daemon.stop()
    }
}
