import AfterimageTestSupport
import Crypto
import Foundation
import Logging
import MicroHTTP
import PQ
import Primitives
import S3
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// The lookup API's refusals, in-process: `LookupRoutes` on a `Router` answered through
/// `Router.respond(to:)`, over a migrated database of the test's own, without a daemon or a socket. Each
/// request takes the server's path (route, token, parameters, handler, error rendering). Every answer is
/// checked against openapi.yaml. What needs the daemon (the bucket honouring URLs, the cache's NOTIFY,
/// logs) stays in `LookupTests`.
@Suite("Lookup routes in-process: parameters, tokens, not found")
struct LookupRouteTests {
    /// The routes over `databaseURL`, with the daemon's error renderer; `cacheSeconds` 0 keeps every lookup on
    /// the database.
    final class Rig: Sendable {
        let pool: Pool
        let router: Router
        let seeder: Seeder
        /// Started when the rig is `batched`: lookups the cache cannot answer then go through it, as in the daemon.
        let batcher: LookupBatcher?

        init(databaseURL: String, tokens: [String], cacheSeconds: Int = 0, batched: Bool = false, poolSize: Int = 2) throws {
            let logger = Logger(label: "lookup-route-test")
            let s3 = try TestEnvironment.s3()
            let storage = S3Client(
                endpoint: try S3Endpoint(endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, pathStyle: true),
                credentials: S3Credentials(
                    accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey,
                    sessionToken: nil))
            pool = Pool(url: databaseURL, size: poolSize, acquireTimeout: .seconds(5), connectTimeoutSeconds: 2)
            let authenticator = BearerAuthenticator(tokens: tokens)
            var router = Router(unhandledError: UnhandledErrors.renderer(logger: logger))
            let cache = LookupCache(lifetimeSeconds: cacheSeconds)
            var configuration = LookupBatcher.Configuration()
            configuration.readers = 1
            batcher = batched ? LookupBatcher(pool: pool, cache: cache, configuration: configuration) : nil
            batcher?.start()
            LookupRoutes(
                pool: pool, presigner: Presigner(storage: storage, defaultTTL: 3600), authenticator: { authenticator },
                cache: cache, batcher: batcher, logger: logger
            )
            .register(on: &router)
            self.router = router
            seeder = Seeder(databaseURL: databaseURL)
        }

        deinit {
            batcher?.stop()
            pool.close()
        }
    }

    /// A rig over a migrated database of its own with one settled prediction, and a client with its token.
    func seededPrediction(prefix: String) throws -> (Rig, LookupClient, String) {
        let token = randomToken()
        let rig = try Rig(databaseURL: try TestEnvironment.migratedDatabase(prefix: prefix), tokens: [token])
        let id = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        try rig.seeder.prediction(id)
        return (rig, try LookupClient(router: rig.router, token: token), id)
    }

    /// A database URL nothing listens on: any request that reached the database would be answered 503.
    static func deadDatabase() -> String { "postgresql://afterimage@127.0.0.1:\(freePort())/none" }

    @Test func parametersAreRefusedBeforeTheDatabaseIsAsked() throws {
        let token = randomToken()
        let rig = try Rig(databaseURL: Self.deadDatabase(), tokens: [token])
        let client = try LookupClient(router: rig.router, token: token)
        let long = String(repeating: "x", count: 300)
        for path in [
            "/v1/predictions/replicate/p/outputs/abc", "/v1/predictions/replicate/p/outputs/-1",
            "/v1/predictions/replicate/p/outputs/1234567", "/v1/predictions/replicate/\(long)",
            "/v1/predictions/replicate/\(long)/outputs/0", "/v1/predictions/\(String(repeating: "p", count: 65))/x",
            "/v1/predictions/replicate/a%01b", "/v1/predictions/replicate/p?expires=0",
            "/v1/predictions/replicate/p?expires=soon", "/v1/predictions/replicate/p/outputs/0?expires=0",
            "/v1/predictions/replicate/p/outputs/0?download=a%2Fb", "/v1/assets?state=lost", "/v1/assets?limit=0",
            "/v1/assets?limit=1001", "/v1/assets?limit=ten", "/v1/assets?after=-4", "/v1/assets?provider=a%7Fb",
            "/v1/predictions?limit=0",
        ] {
            let answer = try client.send("GET", path)
            #expect(answer.status == 400, "\(path): \(String(decoding: answer.body, as: UTF8.self))")
            #expect(client.errorCode(answer) == "invalid_parameter", "\(path)")
        }
        for id in ["x", "0", "-3", "99999999999999999999"] {
            let answer = try client.send("POST", "/v1/assets/\(id)/retry")
            #expect(answer.status == 400, "retry of \(id)")
            #expect(client.errorCode(answer) == "invalid_parameter")
        }
        // With a valid request the dead database is reached, and says so: 503, retry later.
        let outage = try client.send("GET", "/v1/predictions/replicate/p")
        #expect(outage.status == 503)
        #expect(client.errorCode(outage) == "database_unavailable")
        #expect(outage.headers["retry-after"] == "5")
        try client.validateCaptured()
    }

    /// Issue 17: lookups the cache cannot answer are read many per statement. While the pool's only
    /// connection is busy, 40 concurrent lookups (30 predictions with 0–3 outputs, 10 unknown) queue in the
    /// batcher; once it frees up they are read in at most three statements (the one lookup a reader may
    /// already hold, the rest), and each client gets its own prediction, or 404. One statement per lookup,
    /// as before the batcher, fails the count.
    @Test func concurrentLookupsShareStatements() throws {
        let token = randomToken()
        let url = try TestEnvironment.migratedDatabase(prefix: "lookupbatch")
        let rig = try Rig(databaseURL: url, tokens: [token], batched: true, poolSize: 1)
        let batcher = try #require(rig.batcher)
        let prefix = "b\(UUID().uuidString.prefix(6).lowercased())"
        for n in 0..<30 {
            try rig.seeder.prediction("\(prefix)-\(n)", status: n % 7 == 0 ? "failed" : "succeeded")
            for index in 0..<(n % 4) {
                try rig.seeder.asset(
                    predictionID: "\(prefix)-\(n)", index: index, .init(state: "stored", key: "replicate/\(prefix)-\(n)/\(index).png"))
            }
        }
        let ids = (0..<30).map { "\(prefix)-\($0)" } + (0..<10).map { "\(prefix)-unknown-\($0)" }
        let answers = Mutex<[String: LookupAnswer]>([:])
        let clientErrors = Mutex<[String]>([])
        let threads = try rig.pool.withConnection { _ in
            // Every lookup is sent while the pool's one connection is lent here.
            let threads = ids.map { id in
                Thread {
                    do {
                        let client = try LookupClient(router: rig.router, token: token)
                        let answer = try client.send("GET", "/v1/predictions/replicate/\(id)")
                        answers.withLock { $0[id] = answer }
                    } catch {
                        clientErrors.withLock { $0.append("\(id): \(error)") }
                    }
                }
            }
            for thread in threads { thread.start() }
            let deadline = ContinuousClock.now + .seconds(4)
            // All of them submitted: the reader may hold some (waiting for the connection), the rest wait in its queue.
            while batcher.submitted.load(ordering: .relaxed) < ids.count, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
            #expect(batcher.submitted.load(ordering: .relaxed) == ids.count, "the lookups did not all reach the batcher")
            return threads
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while answers.withLock({ $0.count }) + clientErrors.withLock({ $0.count }) < ids.count, ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        _ = threads
        #expect(clientErrors.withLock { $0 }.isEmpty)
        let all = answers.withLock { $0 }
        #expect(all.count == ids.count)
        let client = try LookupClient(router: rig.router, token: token)
        for (n, id) in ids.enumerated() {
            let answer = try #require(all[id], "no answer for \(id)")
            if n < 30 {
                #expect(answer.status == 200, "\(id): \(answer.status)")
                let body = try client.json(answer)
                #expect(body["id"] as? String == id)
                #expect((body["assets"] as? [[String: Any]])?.count == n % 4, "\(id)")
                #expect((body["assets"] as? [[String: Any]])?.allSatisfy { ($0["url"] as? String)?.contains("/\(id)/") == true } == true)
            } else {
                #expect(answer.status == 404, "\(id)")
                #expect(client.errorCode(answer) == "prediction_not_found")
            }
        }
        #expect(batcher.lookups.load(ordering: .relaxed) == ids.count)
        #expect(
            batcher.statements.load(ordering: .relaxed) <= 3, "\(batcher.statements.load(ordering: .relaxed)) statements for \(ids.count) lookups")
    }

    /// Issue 17: a page of the asset listing filtered by state is planned for its state (never a prepared
    /// statement's generic plan, which walks the primary key and filters: 93 ms for a page of failed assets
    /// deep in a million predictions), and that plan is a range of `assets_state_id_idx`.
    @Test func assetPagesByStateArePlannedForTheirState() throws {
        let url = try TestEnvironment.migratedDatabase(prefix: "assetplan")
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        // A table the planner takes seriously: 20,000 assets, 1 % of them failed.
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state)
            SELECT 'replicate', 'plan-' || g, '/0', 0, 'https://replicate.delivery/x/' || g, CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'stored' END
            FROM generate_series(1, 20000) AS g
            """)
        try connection.execute("ANALYZE assets")
        let store = LookupStore()
        for _ in 0..<8 {  // past the five runs after which a prepared statement may switch to its generic plan
            let page = try store.assets(.init(state: "failed", after: 10_000, limit: 20), on: connection)
            #expect(page.assets.count == 20 && page.assets.allSatisfy { $0.state == .failed && $0.id > 10_000 })
            #expect(try store.assets(.init(state: "failed", provider: "replicate", after: 10_000, limit: 20), on: connection).assets.count == 20)
        }
        let prepared = try connection.query("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%a.state = $3%'")
        #expect(prepared.count == 0, "a state-filtered page went through a prepared statement")
        for byProvider in [false, true] {
            let sql = LookupStore.assetListSQL(byState: true, byProvider: byProvider)
            let parameters: [any PQEncodable] = byProvider ? [10_000, 21, "failed", "replicate"] : [10_000, 21, "failed"]
            let plan = try connection.query("EXPLAIN " + sql, parameters).map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
            #expect(plan.contains("assets_state_id_idx"), "\(plan)")
        }
    }

    /// Issue 17: a page filtered by provider is planned for its provider and is a range of
    /// `assets_provider_id_idx` from the cursor (a generic plan walked the primary key past every other
    /// provider's rows: 103 ms for a page of a provider with 0.1 % of a million assets); an unfiltered page's
    /// generic plan is a range of the primary key. Neither sorts.
    @Test func assetPagesByProviderAreARangeOfTheirProvider() throws {
        let url = try TestEnvironment.migratedDatabase(prefix: "assetplan")
        let connection = try Connection.connect(url: url)
        defer { connection.close() }
        // 20,000 assets, 1 % of them from fal.
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state)
            SELECT CASE WHEN g % 100 = 0 THEN 'fal' ELSE 'replicate' END, 'plan-' || g, '/0', 0,
                   'https://replicate.delivery/x/' || g, 'stored'
            FROM generate_series(1, 20000) AS g
            """)
        try connection.execute("ANALYZE assets")
        let store = LookupStore()
        for _ in 0..<8 {  // past the five runs after which a prepared statement may switch to its generic plan
            let page = try store.assets(.init(provider: "fal", after: 10_000, limit: 20), on: connection)
            #expect(page.assets.count == 20 && page.assets.allSatisfy { $0.provider == "fal" && $0.id > 10_000 })
            #expect(page.assets.map(\.id) == page.assets.map(\.id).sorted())
        }
        let prepared = try connection.query("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%a.provider = $3%'")
        #expect(prepared.count == 0, "a provider-filtered page went through a prepared statement")
        let sql = LookupStore.assetListSQL(byState: false, byProvider: true)
        let plan = try connection.query("EXPLAIN " + sql, [10_000, 21, "fal"]).map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
        #expect(plan.contains("assets_provider_id_idx") && !plan.contains("Sort"), "\(plan)")
        try connection.execute("SET plan_cache_mode = force_generic_plan")
        let unfiltered = try explain(LookupStore.assetListSQL(byState: false, byProvider: false), parameters: ["10000", "21"], on: connection)
        #expect(unfiltered.contains("assets_pkey") && !unfiltered.contains("Sort"), "\(unfiltered)")
    }

    /// A batched lookup that cannot reach the database is answered 503 + Retry-After, like the pool path.
    @Test func batchedLookupsOfAnUnreachableDatabaseAre503() throws {
        let token = randomToken()
        let rig = try Rig(databaseURL: Self.deadDatabase(), tokens: [token], batched: true)
        let client = try LookupClient(router: rig.router, token: token)
        let outage = try client.send("GET", "/v1/predictions/replicate/p")
        #expect(outage.status == 503)
        #expect(client.errorCode(outage) == "database_unavailable")
        #expect(outage.headers["retry-after"] == "5")
        #expect(rig.batcher?.statements.load(ordering: .relaxed) == 1, "the batcher read it")
        try client.validateCaptured()
    }

    /// Every lookup route wants a configured bearer token; the answer says which is wrong and how to
    /// authenticate, and the token is checked before anything else (parameters, the cache, the database).
    @Test(arguments: [0, 60])
    func tokensAreRequiredOnEveryRoute(cacheSeconds: Int) throws {
        let plain = randomToken()
        let hashedOnly = randomToken()
        let digest = Hex.encode(SHA256.hash(data: Array(hashedOnly.utf8)))
        let url = try TestEnvironment.migratedDatabase(prefix: "lookuptokens")
        let rig = try Rig(databaseURL: url, tokens: [plain, "sha256:\(digest)"], cacheSeconds: cacheSeconds)
        let client = try LookupClient(router: rig.router, token: plain)
        let id = "tk\(UUID().uuidString.prefix(8).lowercased())"
        try rig.seeder.prediction(id)
        let path = "/v1/predictions/replicate/\(id)"

        #expect(try client.send("GET", path).status == 200)
        #expect(try client.send("GET", path).status == 200, "a second time, from the cache when it is on")
        #expect(try client.send("GET", path, authorization: "Bearer \(hashedOnly)").status == 200)
        #expect(try client.send("GET", path, authorization: "bearer \(plain)").status == 200)
        #expect(try client.send("GET", path, authorization: "  Bearer \t\(plain)  ").status == 200)
        let routes = [
            ("GET", path), ("GET", path + "/outputs/0"), ("GET", path + "/outputs/0/url"), ("GET", "/v1/assets"),
            ("POST", "/v1/assets/1/retry"), ("GET", "/v1/predictions"), ("GET", "/v1/stats"),
            ("GET", "/v1/predictions/replicate/p/outputs/abc"), ("GET", "/v1/assets?limit=0"),
        ]
        for (authorization, code) in [
            ("", "token_missing"), ("Bearer \(plain)x", "token_invalid"), ("Bearer \(digest)", "token_invalid"),
            ("Bearer sha256:\(digest)", "token_invalid"), ("Basic \(plain)", "token_missing"),
            ("Bearer ", "token_invalid"), ("Bearer", "token_invalid"), ("Bearer a b", "token_invalid"),
        ] {
            for (method, route) in routes {
                let refused = try client.send(method, route, authorization: authorization)
                #expect(refused.status == 401, "\(method) \(route) with \(authorization.prefix(6))…")
                #expect(refused.headers["www-authenticate"]?.hasPrefix("Bearer realm=\"afterimage\"") == true)
                #expect(client.errorCode(refused) == code, "\(method) \(route) with \(authorization.prefix(6))…")
            }
        }
        // Webhook signatures mean nothing here.
        let webhook = SignedWebhook(Array("{}".utf8), secret: "whsec_" + Data(repeating: 7, count: 24).base64EncodedString())
        #expect(try client.send("GET", path, authorization: "", headers: webhook.headers).status == 401)
        try client.validateCaptured()

        // No api.tokens at all: the lookup API is closed, whatever is presented.
        let closed = try Rig(databaseURL: url, tokens: [], cacheSeconds: cacheSeconds)
        let anyone = try LookupClient(router: closed.router, token: plain)
        #expect(try anyone.send("GET", path).status == 401)
        #expect(try anyone.send("GET", path, authorization: "").status == 401)
        #expect(try anyone.send("GET", "/v1/assets", authorization: "Bearer ").status == 401)
        try anyone.validateCaptured()
    }

    @Test func unknownPredictionsOutputsAssetsAndRoutesAre404() throws {
        let (rig, client, id) = try seededPrediction(prefix: "lookup404")
        let token = try #require(client.token)
        try rig.seeder.asset(predictionID: id, index: 0, .init(state: "pending"))

        for (path, code) in [
            ("/v1/predictions/replicate/unknown-\(id)", "prediction_not_found"),
            ("/v1/predictions/stability/\(id)", "prediction_not_found"),
            ("/v1/predictions/replicate/\(id)/outputs/1", "output_not_found"),
            ("/v1/predictions/replicate/unknown-\(id)/outputs/0", "output_not_found"),
            ("/v1/predictions/replicate/\(id)/outputs/9/url", "output_not_found"),
        ] {
            let answer = try client.send("GET", path)
            #expect(answer.status == 404, "\(path)")
            #expect(client.errorCode(answer) == code, "\(path)")
        }
        let retry = try client.send("POST", "/v1/assets/99999999/retry")
        #expect(retry.status == 404)
        #expect(client.errorCode(retry) == "asset_not_found")
        try client.validateCaptured()

        // Outside the documented API (so not validated against it): the router's own 404 and 405.
        for path in ["/v1/predictions/replicate/\(id)/outputs", "/v1/nothing", "/v1/assets/"] {
            let answer = try rig.router.respond(to: Request(method: "GET", target: path, headers: ["authorization": "Bearer \(token)"]))
            #expect(answer.status == 404, "\(path)")
        }
        let wrongMethod = try rig.router.respond(to: Request(method: "DELETE", target: "/v1/assets"))
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers.contains { $0.0 == "Allow" && $0.1 == "GET, HEAD" })
    }

    /// Outputs in every state the queue knows: 409 with a Retry-After that follows the next attempt while
    /// pending or in flight, 410 with the recorded reason once lost, 404 for one that does not exist.
    @Test func pendingInFlightLostAndUnknownOutputs() throws {
        let (rig, client, id) = try seededPrediction(prefix: "lookupstates")
        try rig.seeder.asset(predictionID: id, index: 0, .init(state: "pending", nextAttemptInSeconds: 40))
        try rig.seeder.asset(predictionID: id, index: 1, .init(state: "in_flight"))
        try rig.seeder.asset(predictionID: id, index: 2, .init(state: "failed", failureReason: "the file is larger than fetch.max_bytes (10)"))
        try rig.seeder.asset(predictionID: id, index: 3, .init(state: "expired", failureReason: "the source answered 404 after its deadline"))
        try rig.seeder.asset(predictionID: id, index: 4, .init(state: "pending"))
        let base = "/v1/predictions/replicate/\(id)/outputs"

        let later = try client.send("GET", "\(base)/0")
        #expect(later.status == 409)
        #expect(client.errorCode(later) == "asset_not_ready")
        let wait = try #require(Int(later.headers["retry-after"] ?? ""))
        #expect((35...41).contains(wait), "Retry-After \(wait) for a try due in 40 s")
        let inFlight = try client.send("GET", "\(base)/1")
        #expect(inFlight.status == 409)
        #expect(Int(inFlight.headers["retry-after"] ?? "") ?? 0 >= 1)
        let due = try client.send("GET", "\(base)/4")
        #expect(due.status == 409)
        #expect(Int(due.headers["retry-after"] ?? "") ?? 0 >= 1)

        let failed = try client.send("GET", "\(base)/2")
        #expect(failed.status == 410)
        #expect(client.errorCode(failed) == "asset_failed")
        #expect(String(decoding: failed.body, as: UTF8.self).contains("larger than fetch.max_bytes"))
        let expired = try client.send("GET", "\(base)/3")
        #expect(expired.status == 410)
        #expect(client.errorCode(expired) == "asset_expired")
        #expect(String(decoding: expired.body, as: UTF8.self).contains("after its deadline"))

        let noOutput = try client.send("GET", "\(base)/9")
        #expect(noOutput.status == 404)
        #expect(client.errorCode(noOutput) == "output_not_found")

        // The prediction lists every asset with its state; none has a URL.
        let listed = try client.json(try client.send("GET", "/v1/predictions/replicate/\(id)"))["assets"] as? [[String: Any]] ?? []
        #expect(listed.map { $0["state"] as? String } == ["pending", "in_flight", "failed", "expired", "pending"])
        #expect(listed.allSatisfy { $0["url"] == nil })
        #expect(listed[2]["failure_reason"] as? String == "the file is larger than fetch.max_bytes (10)")
        // Retrying one that is not lost is refused.
        let assetID = try #require(listed[0]["id"] as? Int)
        let notLost = try client.send("POST", "/v1/assets/\(assetID)/retry")
        #expect(notLost.status == 409)
        #expect(client.errorCode(notLost) == "asset_not_retryable")
        try client.validateCaptured()
    }
}
