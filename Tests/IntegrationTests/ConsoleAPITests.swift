import AfterimageTestSupport
import Curl
import Foundation
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// Issue 18's API, against the real daemon, PostgreSQL and SeaweedFS: the prediction listing the gallery
/// pages through, the health strip's figures, the JSON form of a presigned output URL, and the console's
/// static files with their security headers. Every response is checked against openapi.yaml.
@Suite("Console API: listing, stats, signed URLs and /ui/", .serialized)
struct ConsoleAPITests {
    func start(_ harness: ArchiveHarness, token: String, extra: [String: String] = [:]) throws -> (DaemonProcess, LookupClient) {
        // No workers: seeded rows stay in the states the test gave them.
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_API_TOKENS": token, "AFTERIMAGE_WORKERS_COUNT": "0"].merging(extra) { $1 })
        return (daemon, try LookupClient(port: daemon.port, token: token))
    }

    func predictions(_ page: [String: Any]) -> [[String: Any]] { page["predictions"] as? [[String: Any]] ?? [] }
    func names(_ page: [String: Any]) -> [String] {
        predictions(page).map { "\($0["provider"] as? String ?? "?")/\($0["id"] as? String ?? "?")" }
    }

    /// Predictions first seen one second apart (p0 oldest); two share one timestamp so the tie-break on
    /// (provider, id) is exercised.
    func seedTimeline(_ harness: ArchiveHarness, count: Int, tag: String) throws -> [String] {
        var seeded: [String] = []
        let connection = try harness.connection()
        defer { connection.close() }
        // An hour ago, with microseconds, read once: every row's time is this plus whole seconds.
        let base: String = try #require(try connection.query("SELECT (now() - interval '1 hour')::text").first?.decode(0))
        for index in 0..<count {
            let provider = index % 3 == 2 ? "stability" : "replicate"
            let id = "\(tag)\(String(format: "%02d", index))"
            try harness.seedPrediction(id, provider: provider, status: index % 4 == 3 ? "failed" : "succeeded")
            let second = index == 5 ? 4 : index  // p04 and p05 share a first_seen_at
            try connection.execute(
                """
                UPDATE predictions SET first_seen_at = $4::timestamptz + make_interval(secs => $1)
                WHERE provider = $2 AND id = $3
                """, [second, provider, id, base])
            seeded.append("\(provider)/\(id)")
        }
        return seeded
    }

    @Test func listingPagesNewestFirstWithFiltersAndStablePages() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token)
        let seeded = try seedTimeline(harness, count: 12, tag: "cl")
        // Newest first: by first_seen_at, then provider, then id, all descending.
        let expected = seeded.enumerated().sorted { a, b in
            let ta = a.offset == 5 ? 4 : a.offset
            let tb = b.offset == 5 ? 4 : b.offset
            if ta != tb { return ta > tb }
            return a.element > b.element
        }.map(\.element)

        var seen: [String] = []
        var before: String?
        var pages = 0
        repeat {
            let path = "/v1/predictions?limit=5" + (before.map { "&before=\($0)" } ?? "")
            let answer = try client.send("GET", path)
            #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
            #expect(answer.headers["cache-control"] == "no-store")
            let page = try client.json(answer)
            seen += names(page)
            before = page["next_before"] as? String
            pages += 1
            if pages == 1 {
                // Newer predictions arriving mid-listing sort before page one: the later pages do not move.
                try harness.seedPrediction("cl-late", status: "succeeded")
            }
        } while before != nil && pages < 10
        #expect(pages == 3)
        #expect(seen == expected, "pages out of order, repeated or missing")
        // The late arrival heads a fresh listing.
        #expect(names(try client.json(try client.send("GET", "/v1/predictions?limit=1"))) == ["replicate/cl-late"])

        // Provider filter, paged, keeps the same order.
        var stability: [String] = []
        before = nil
        repeat {
            let page = try client.json(try client.send("GET", "/v1/predictions?provider=stability&limit=2" + (before.map { "&before=\($0)" } ?? "")))
            stability += names(page)
            before = page["next_before"] as? String
        } while before != nil && stability.count < 20
        #expect(stability == expected.filter { $0.hasPrefix("stability/") })
        // Status filter, with and without a provider.
        let failed = names(try client.json(try client.send("GET", "/v1/predictions?status=failed")))
        #expect(failed == expected.filter { name in seeded.firstIndex(of: name).map { $0 % 4 == 3 } ?? false })
        let failedStability = names(try client.json(try client.send("GET", "/v1/predictions?status=failed&provider=stability")))
        #expect(failedStability == failed.filter { $0.hasPrefix("stability/") })
        #expect(predictions(try client.json(try client.send("GET", "/v1/predictions?provider=nobody"))).isEmpty)

        // Refusals: bad limits, a forged or foreign cursor, a cursor from another provider's listing.
        for path in [
            "/v1/predictions?limit=0", "/v1/predictions?limit=101", "/v1/predictions?before=nonsense",
            "/v1/predictions?before=" + PredictionCursor(firstSeenAt: "yesterday", provider: "replicate", id: "x").encoded,
            "/v1/predictions?before=" + String(repeating: "A", count: 1100),
        ] {
            let refused = try client.send("GET", path)
            #expect(refused.status == 400, "\(path)")
            #expect(client.errorCode(refused) == "invalid_parameter")
        }
        let firstPage = try client.json(try client.send("GET", "/v1/predictions?limit=1&provider=replicate"))
        let replicateCursor = try #require(firstPage["next_before"] as? String)
        #expect(try client.send("GET", "/v1/predictions?provider=stability&before=\(replicateCursor)").status == 400)
        #expect(try client.send("GET", "/v1/predictions", authorization: "").status == 401)
        #expect(try client.send("GET", "/v1/predictions", authorization: "Bearer wrong").status == 401)

        try client.validateCaptured()
        try daemon.stop()
    }

    @Test func listedOutputsCarryPresignedURLsAndStatesAndTheURLRouteSigns() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token)
        let storage = try harness.storage()
        let id = "ca\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        let key = "\(harness.prefix)replicate/\(id)/0.png"
        let bytes = Array("a stored output of \(id)".utf8)
        try storage.putObject(key: key, body: .bytes(bytes), contentType: "image/png")
        try harness.seedAsset(predictionID: id, index: 0, .init(key: key, size: Int64(bytes.count), sha256: FakeProvider.sha256Hex(bytes)))
        try harness.seedAsset(predictionID: id, index: 1, .init(state: "pending", key: nil, nextAttemptInSeconds: 30))
        try harness.seedAsset(predictionID: id, index: 2, .init(state: "failed", key: nil, failureReason: "the host is not in fetch.allowed_hosts"))
        let empty = "ce\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(empty, status: "processing")

        let page = try client.json(try client.send("GET", "/v1/predictions?expires=120"))
        let listed = predictions(page)
        #expect(listed.map { $0["id"] as? String } == [empty, id])
        #expect((listed[0]["assets"] as? [Any])?.isEmpty == true)
        #expect(listed[0]["status"] as? String == "processing")
        #expect(listed[1]["input"] == nil, "the listing leaves the input to the prediction lookup")
        let assets = try #require(listed[1]["assets"] as? [[String: Any]])
        #expect(assets.map { $0["state"] as? String } == ["stored", "pending", "failed"])
        let url = try #require(assets[0]["url"] as? String)
        #expect(url.hasPrefix(harness.s3.endpoint + "/"))
        #expect(url.contains("X-Amz-Expires=120"))
        #expect(try LookupClient.fetch(url).body == bytes, "the listed URL must fetch the stored bytes from the bucket")
        #expect(assets[1]["url"] == nil && assets[2]["url"] == nil)
        #expect(assets[2]["failure_reason"] as? String == "the host is not in fetch.allowed_hosts")
        #expect(page["next_before"] is NSNull)

        // The output URL as JSON: the same URL the 302 carries, with a download name applied by the bucket.
        let base = "/v1/predictions/replicate/\(id)/outputs"
        let signed = try client.send("GET", "\(base)/0/url?download=\(pathSegment("still life.png"))")
        #expect(signed.status == 200)
        #expect(signed.headers["cache-control"] == "no-store")
        let signedURL = try #require(try client.json(signed)["url"] as? String)
        let fetched = try LookupClient.fetch(signedURL)
        #expect(fetched.body == bytes)
        #expect(fetched.headers["content-disposition"]?.contains("still life.png") == true)
        let notReady = try client.send("GET", "\(base)/1/url")
        #expect(notReady.status == 409)
        #expect(Int(notReady.headers["retry-after"] ?? "") ?? 0 >= 1)
        let lost = try client.send("GET", "\(base)/2/url")
        #expect(lost.status == 410)
        #expect(String(decoding: lost.body, as: UTF8.self).contains("fetch.allowed_hosts"))
        #expect(try client.send("GET", "\(base)/7/url").status == 404)
        #expect(try client.send("GET", "\(base)/0/url", authorization: "").status == 401)

        try client.validateCaptured()
        try daemon.stop()
    }

    @Test func statsCountWhatWaitsFailedAndWasStoredToday() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token)
        let empty = try client.json(try client.send("GET", "/v1/stats"))
        for name in ["pending", "in_flight", "failed", "expired", "stored_today", "deadline_misses_today", "overdue"] {
            #expect(empty[name] as? Int == 0, "\(name) on an empty database")
        }
        #expect(empty["earliest_deadline"] is NSNull)
        #expect(empty["checks"] as? [String: String] == ["database": "ok", "storage": "ok"])

        let id = "cs\(UUID().uuidString.prefix(8).lowercased())"
        try harness.seedPrediction(id)
        var ids: [String: Int64] = [:]
        for (index, state) in ["pending", "pending", "in_flight", "failed", "failed", "failed", "expired", "stored", "stored", "stored"].enumerated()
        {
            ids["\(state)\(index)"] = try harness.seedAsset(
                predictionID: id, index: index,
                .init(state: state, key: state == "stored" ? "k/\(index)" : nil))
        }
        let connection = try harness.connection()
        defer { connection.close() }
        // One stored late (after its deadline), one stored yesterday; one pending already past its deadline.
        try connection.execute("UPDATE assets SET deadline = stored_at - interval '1 second' WHERE id = $1", [ids["stored7"]!])
        try connection.execute("UPDATE assets SET stored_at = date_trunc('day', now()) - interval '1 hour' WHERE id = $1", [ids["stored9"]!])
        try connection.execute("UPDATE assets SET deadline = now() - interval '5 minutes' WHERE id = $1", [ids["pending0"]!])
        let earliest: String = try #require(
            try connection.query(
                "SELECT to_char(deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM assets WHERE id = $1", [ids["pending0"]!]
            ).first?.decode(0))

        // The figures are kept for a second; wait for the ones that reflect the seeded rows.
        var stats: [String: Any] = [:]
        try waitUntil(timeout: .seconds(10), pollEvery: .milliseconds(250), "stats to show the seeded assets") {
            stats = try client.json(try client.send("GET", "/v1/stats"))
            return stats["pending"] as? Int == 2
        }
        #expect(stats["in_flight"] as? Int == 1)
        #expect(stats["failed"] as? Int == 3)
        #expect(stats["expired"] as? Int == 1)
        #expect(stats["stored_today"] as? Int == 2)
        #expect(stats["deadline_misses_today"] as? Int == 2, "one stored late today plus one expired today")
        #expect(stats["overdue"] as? Int == 1)
        #expect((stats["earliest_deadline"] as? String)?.hasPrefix(earliest) == true, "\(stats["earliest_deadline"] ?? "nil") vs \(earliest)")
        #expect(try client.send("GET", "/v1/stats", authorization: "").status == 401)
        try client.validateCaptured()
        try daemon.stop()
    }

    /// The statistics statement reads indexes only: no sequential scan of assets, whatever its size.
    @Test func statsStatementUsesIndexes() throws {
        let harness = try ArchiveHarness()
        try TestEnvironment.migrate(harness.databaseURL)
        let connection = try harness.connection()
        defer { connection.close() }
        // A realistic mix: nearly everything stored over the last 60 days, a little waiting or lost.
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, deadline, stored_at)
            SELECT 'replicate', 'p' || g, '/0', 0, 'https://x/' || g, s.state,
                   now() - (g % 1440) * interval '1 hour' + interval '1 hour',
                   CASE WHEN s.state = 'stored' THEN now() - (g % 1440) * interval '1 hour' END
            FROM generate_series(1, 200000) g,
                 LATERAL (SELECT CASE g % 200 WHEN 0 THEN 'pending' WHEN 1 THEN 'pending' WHEN 2 THEN 'in_flight'
                                 WHEN 3 THEN 'failed' WHEN 4 THEN 'failed' WHEN 5 THEN 'expired' ELSE 'stored' END AS state) s
            """)
        // Autovacuum's work, done now: the visibility map lets counts read the indexes alone.
        try connection.execute("VACUUM ANALYZE assets")
        let plan = try explain(ConsoleStats.sql, on: connection)
        #expect(!plan.contains("Seq Scan"), "the statistics statement scans a table:\n\(plan)")
    }

    @Test func consoleFilesAreServedWithTheirSecurityHeaders() throws {
        let harness = try ArchiveHarness()
        let token = randomToken()
        let (daemon, client) = try start(harness, token: token)
        // Only the page itself is in openapi.yaml (its headers are part of the API's promise).
        let documented = try LookupClient(port: daemon.port, token: nil)
        let page = try documented.send("GET", "/ui/")
        try documented.validateCaptured()
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        let bucket = harness.s3.endpoint  // path-style: the endpoint is the origin presigned URLs use
        #expect(
            page.headers["content-security-policy"]
                == "default-src 'self'; img-src 'self' \(bucket); media-src 'self' \(bucket); frame-ancestors 'none'")
        #expect(page.headers["x-content-type-options"] == "nosniff")
        #expect(page.headers["referrer-policy"] == "no-referrer")
        #expect(String(decoding: page.body, as: UTF8.self).contains("<script src=\"console.js\" defer></script>"))
        for (file, type) in [
            ("console.js", "text/javascript; charset=utf-8"), ("console.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let answer = try client.send("GET", "/ui/\(file)", authorization: "")
            #expect(answer.status == 200, "\(file)")
            #expect(answer.headers["content-type"] == type)
            #expect(answer.headers["x-content-type-options"] == "nosniff")
            #expect(answer.headers["content-security-policy"] == page.headers["content-security-policy"])
            let etag = try #require(answer.headers["etag"])
            let again = try client.send("GET", "/ui/\(file)", authorization: "", headers: [("If-None-Match", etag)])
            #expect(again.status == 304)
            #expect(again.body.isEmpty)
        }
        let missing = try client.send("GET", "/ui/nope.js", authorization: "")
        #expect(missing.status == 404)
        #expect(missing.headers["x-content-type-options"] == "nosniff")
        let bare = try client.send("GET", "/ui", authorization: "")
        #expect(bare.status == 308)
        #expect(bare.headers["location"] == "/ui/")
        try daemon.stop()

        // ui.enabled = false: no console at all; the API is unaffected.
        let (off, offClient) = try start(harness, token: token, extra: ["AFTERIMAGE_UI_ENABLED": "false"])
        #expect(try offClient.send("GET", "/ui/", authorization: "").status == 404)
        #expect(try offClient.send("GET", "/ui/console.js", authorization: "").status == 404)
        #expect(try offClient.send("GET", "/v1/stats").status == 200)
        try off.stop()
    }
}

/// The plan of `sql` as text, parameters bound through PREPARE so the statement is exactly the one the
/// daemon sends. `warmUp` executions first: PostgreSQL plans a prepared statement afresh for its first five
/// executions and may then switch to a generic plan, so the plan after them is the one a pooled
/// connection keeps using.
func explain(_ sql: String, parameters: [String] = [], warmUp: Int = 0, on connection: Connection) throws -> String {
    let name = "explained_\(UUID().uuidString.prefix(8).lowercased())"
    try connection.execute("PREPARE \(name) AS \(sql)")
    defer { _ = try? connection.execute("DEALLOCATE \(name)") }
    let arguments = parameters.isEmpty ? "" : "(" + parameters.joined(separator: ", ") + ")"
    for _ in 0..<warmUp { _ = try connection.query("EXECUTE \(name)\(arguments)") }
    let rows = try connection.query("EXPLAIN EXECUTE \(name)\(arguments)")
    return try rows.map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
}
