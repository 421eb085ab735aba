import AfterimageTestSupport
import Curl
import Foundation
import Logging
import MicroHTTP
import PQ
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// Group commit with callbacks: deliveries submitted at once share transactions, every one is answered
/// exactly once, a hung commit is answered 503 in time (and still commits), and a dead database is a 503
/// with Retry-After through the real route, never a hang.
@Suite("Intake batcher")
struct IntakeBatcherTests {
    static let secret = "whsec_" + Data("intake-batcher-test-secret".utf8).base64EncodedString()

    func migratedDatabase() throws -> String { try TestEnvironment.migratedDatabase(prefix: "batcher") }

    /// A started batcher on a fresh pool; both are stopped and closed when `body` returns.
    func withBatcher(
        _ url: String, poolSize: Int = 4, configuration: IntakeBatcher.Configuration = .init(),
        _ body: (IntakeBatcher, Pool) throws -> Void
    ) throws {
        let pool = Pool(url: url, size: poolSize, acquireTimeout: .seconds(1))
        defer { pool.close() }
        let batcher = IntakeBatcher(
            recorder: DeliveryRecorder(providers: [ReplicateProvider(retentionSeconds: 3600)]), pool: pool,
            configuration: configuration,
            logger: Logger(label: "test"))
        batcher.start()
        defer { batcher.stop() }
        try body(batcher, pool)
    }

    func body(_ id: String, status: String = "succeeded") -> [UInt8] {
        Array(
            """
            {"id":"\(id)","status":"\(status)","model":"m/x","version":"v","input":{"prompt":"a"},
             "output":["https://replicate.delivery/\(id)/0.png"],"created_at":"2026-11-21T10:00:00.000Z",
             "completed_at":"2026-11-21T10:00:05.000Z","error":null}
            """.utf8)
    }

    /// Collects completions; each delivery must be answered exactly once.
    final class Answers: Sendable {
        private let state = Mutex<[String: [Result<IntakeOutcome, any Error>]]>([:])
        func add(_ id: String, _ result: Result<IntakeOutcome, any Error>) { state.withLock { $0[id, default: []].append(result) } }
        var count: Int { state.withLock { $0.count } }
        var all: [String: [Result<IntakeOutcome, any Error>]] { state.withLock { $0 } }
    }

    @Test("200 deliveries submitted at once: all committed, answered once each, in far fewer transactions")
    func submissionsShareTransactions() throws {
        let url = try migratedDatabase()
        try withBatcher(url) { batcher, pool in
            let answers = Answers()
            for n in 0..<200 {
                let id = "p\(n)"
                batcher.submit(.init(provider: .replicate, deliveryID: "msg_\(n)", timestamp: Date(), body: body(id))) { answers.add(id, $0) }
            }
            // The same webhook id again: a duplicate, answered as such.
            let again = Answers()
            try waitUntil(timeout: .seconds(30), "200 answers") { answers.count == 200 }
            batcher.submit(.init(provider: .replicate, deliveryID: "msg_7", timestamp: Date(), body: body("p7"))) { again.add("p7", $0) }
            try waitUntil(timeout: .seconds(10), "the duplicate's answer") { again.count == 1 }

            for (id, results) in answers.all {
                #expect(results.count == 1, "\(id) answered \(results.count) times")
                #expect((try? results[0].get()) == .accepted(predictionID: id, assets: 1), "\(id): \(results[0])")
            }
            #expect((try? again.all["p7"]?[0].get()) == .duplicate(predictionID: "p7"))
            let connection = try Connection.connect(url: url)
            defer { connection.close() }
            let counts = try #require(
                try connection.query(
                    """
                    SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM predictions), (SELECT count(*) FROM assets),
                           (SELECT count(DISTINCT xmin::text) FROM deliveries)
                    """
                ).first)
            #expect(try counts.decode(0, as: Int.self) == 200)
            #expect(try counts.decode(1, as: Int.self) == 200)
            #expect(try counts.decode(2, as: Int.self) == 200)
            // Each row's xmin is the transaction that wrote it: one per delivery would mean no group commit.
            let transactions = try counts.decode(3, as: Int.self)
            #expect(transactions <= 50, "200 deliveries took \(transactions) transactions")
        }
    }

    @Test("repeated webhook ids and outputs inside a batch of new ones: the batch is recorded again with checks, nothing lost or doubled")
    func duplicatesFallBackToCheckedStatements() throws {
        let url = try migratedDatabase()
        try withBatcher(url) { batcher, pool in
            let first = Answers()
            for n in 0..<20 {
                batcher.submit(.init(provider: .replicate, deliveryID: "msg_\(n)", timestamp: Date(), body: body("p\(n)"))) { first.add("p\(n)", $0) }
            }
            try waitUntil(timeout: .seconds(30), "the first 20 answers") { first.count == 20 }

            // Submitted together, so they share batches with plain INSERTs first: new deliveries, a webhook id
            // seen before (deliveries conflict), and a new webhook id for a completed prediction (assets conflict).
            let second = Answers()
            for n in 20..<60 {
                batcher.submit(.init(provider: .replicate, deliveryID: "msg_\(n)", timestamp: Date(), body: body("p\(n)"))) {
                    second.add("p\(n)", $0)
                }
            }
            batcher.submit(.init(provider: .replicate, deliveryID: "msg_3", timestamp: Date(), body: body("p3"))) { second.add("again-3", $0) }
            batcher.submit(.init(provider: .replicate, deliveryID: "msg_resent_5", timestamp: Date(), body: body("p5"))) {
                second.add("resent-5", $0)
            }
            try waitUntil(timeout: .seconds(30), "42 answers") { second.count == 42 }

            let answers = second.all
            for n in 20..<60 { #expect((try? answers["p\(n)"]?[0].get()) == .accepted(predictionID: "p\(n)", assets: 1), "p\(n)") }
            #expect((try? answers["again-3"]?[0].get()) == .duplicate(predictionID: "p3"))
            #expect((try? answers["resent-5"]?[0].get()) == .accepted(predictionID: "p5", assets: 1))
            #expect(answers.values.allSatisfy { $0.count == 1 })
            #expect(batcher.conflictRetries.load(ordering: .relaxed) >= 1, "the plain INSERTs never met the duplicates")
            let connection = try Connection.connect(url: url)
            defer { connection.close() }
            let counts = try #require(
                try connection.query(
                    """
                    SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM predictions), (SELECT count(*) FROM assets)
                    """
                ).first)
            #expect(try counts.decode(0, as: Int.self) == 61)  // 60 ids and the resent one
            #expect(try counts.decode(1, as: Int.self) == 60)
            #expect(try counts.decode(2, as: Int.self) == 60)
        }
    }

    @Test("a commit that hangs is answered with a timeout in time, and the delivery still commits afterwards")
    func hungCommitTimesOut() throws {
        let url = try migratedDatabase()
        var configuration = IntakeBatcher.Configuration()
        configuration.waitTimeout = 1
        try withBatcher(url, configuration: configuration) { batcher, pool in

            let blocker = try Connection.connect(url: url)
            defer { blocker.close() }
            try blocker.execute("BEGIN")
            try blocker.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
            let answers = Answers()
            let submitted = ContinuousClock.now
            batcher.submit(.init(provider: .replicate, deliveryID: "msg_hung", timestamp: Date(), body: body("hung"))) { answers.add("hung", $0) }
            try waitUntil(timeout: .seconds(10), "an answer while the table is locked") { answers.count == 1 }
            #expect(ContinuousClock.now - submitted < .seconds(5))
            let result = try #require(answers.all["hung"]?.first)
            #expect(throws: IntakeBatcher.IntakeTimeout.self) { try result.get() }

            try blocker.execute("ROLLBACK")
            // Nothing lost: the commit that was waiting goes through, and its late outcome is not a second answer.
            try waitUntil(timeout: .seconds(10), "the delivery committed after the lock") {
                (try? pool.withConnection {
                    try $0.query("SELECT count(*) FROM deliveries WHERE webhook_id = 'msg_hung'").first?.decode(0, as: Int.self)
                }) == 1
            }
            #expect(answers.all["hung"]?.count == 1)
        }
    }

    /// Posts a signed webhook to an in-process server; `tamper` changes the body after signing.
    func post(_ payload: [UInt8], id: String, port: Int, tamper: Bool = false) throws -> CurlResponse {
        try SignedWebhook(payload, secret: Self.secret, id: id).post(port: port, tamper: tamper)
    }

    @Test("large bodies are verified as they stream in and, spilled to disk, handled on the pool: accepted when signed, 401 when tampered")
    func largeBodiesAreVerifiedAsTheyArrive() throws {
        let url = try migratedDatabase()
        let spill = NSTemporaryDirectory() + "afterimage-spill-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: spill, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: spill) }
        try withBatcher(url, poolSize: 2) { batcher, pool in
            var router = Router()
            WebhookRoute(
                provider: ReplicateProvider(
                    retentionSeconds: 3600, maxBodyBytes: 1 << 20,
                    verifier: { StandardWebhooksVerifier(secrets: [Self.secret]) }),
                batcher: batcher, pool: pool, spool: nil, logger: Logger(label: "test")
            )
            .register(on: &router)
            let server = HTTPServer(
                router: router,
                configuration: HTTPServer.Configuration(
                    host: "127.0.0.1", port: 0, bodySpillDirectory: spill, bodySpillThresholdBytes: 64 * 1024))
            try server.start()
            defer { server.stop(drainTimeout: .seconds(2)) }

            let prompt = String(repeating: "a long prompt ", count: 30_000)
            let large = Array(
                #"{"id":"big","status":"succeeded","input":{"prompt":"\#(prompt)"},"output":"https://replicate.delivery/big.png","completed_at":"2026-11-21T10:00:05.000Z"}"#
                    .utf8)
            #expect(large.count > 64 * 1024)
            #expect(try post(large, id: "msg_big_tampered", port: server.boundPort, tamper: true).status == 401)
            let accepted = try post(large, id: "msg_big", port: server.boundPort)
            #expect(accepted.status == 200, "\(String(decoding: accepted.body, as: UTF8.self))")
            #expect(String(decoding: accepted.body, as: UTF8.self).contains("accepted"))
            // And a small one stays in memory and on the event thread.
            #expect(try post(body("small"), id: "msg_small", port: server.boundPort).status == 200)
            let connection = try Connection.connect(url: url)
            defer { connection.close() }
            let stored = try connection.query("SELECT webhook_id, length(body) FROM deliveries ORDER BY webhook_id").map {
                (try $0.decode(0, as: String.self), try $0.decode(1, as: Int.self))
            }
            #expect(stored.map(\.0) == ["msg_big", "msg_small"], "the tampered one must write nothing")
            #expect(stored.first?.1 == large.count)
        }
    }

    @Test("with the database gone the webhook route answers 503 with Retry-After, quickly")
    func deadDatabaseIs503() throws {
        // A port nobody listens on: every connection attempt is refused at once.
        try withBatcher("postgresql://afterimage@127.0.0.1:\(freePort())/none", poolSize: 2) { batcher, pool in
            let route = WebhookRoute(
                provider: ReplicateProvider(
                    retentionSeconds: 3600, maxBodyBytes: 1 << 20,
                    verifier: { StandardWebhooksVerifier(secrets: [Self.secret]) }),
                batcher: batcher, pool: pool, spool: nil, logger: Logger(label: "test"))
            var router = Router()
            route.register(on: &router)
            let server = HTTPServer(router: router, configuration: HTTPServer.Configuration(host: "127.0.0.1", port: 0))
            try server.start()
            defer { server.stop(drainTimeout: .seconds(2)) }

            let started = ContinuousClock.now
            let answer = try post(body("down"), id: "msg_down", port: server.boundPort)
            #expect(answer.status == 503)
            #expect(answer.headers["Retry-After"] == "5")
            #expect(String(decoding: answer.body, as: UTF8.self).contains("database_unavailable"))
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }
}
