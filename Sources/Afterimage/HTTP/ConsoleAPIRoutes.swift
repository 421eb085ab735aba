import Foundation
import MicroHTTP
import PQ
import S3
import Synchronization

/// The lookup routes the console needs beyond single predictions: the recent predictions with their
/// outputs (the gallery), the health strip's figures, and a fresh presigned URL as JSON (the prediction
/// view's download and copy buttons: a `fetch` may not follow the output route's 302 to the bucket, which
/// the console's Content-Security-Policy keeps out of `connect-src`).
///
/// They share everything with `LookupRoutes`: the bearer tokens, the admission limit, the error shapes, the
/// store and the presigner.
struct ConsoleAPIRoutes: Sendable {
    let lookup: LookupRoutes
    let storageProbe: StorageProbe
    let statsMemo: StatsMemo

    /// Longest `status=` accepted: provider statuses are short words.
    static let maxStatusBytes = 32

    init(lookup: LookupRoutes) {
        self.lookup = lookup
        storageProbe = StorageProbe(storage: lookup.presigner.storage)
        statsMemo = StatsMemo()
    }

    func register(on router: inout Router) {
        router.add("GET", "/v1/predictions") { request in try lookup.guarded(request, list) }
        router.add("GET", "/v1/stats") { request in try lookup.guarded(request, stats) }
        router.add("GET", "/v1/predictions/{provider}/{id}/outputs/{n}/url") { request in try lookup.guarded(request, signedURL) }
    }

    // MARK: GET /v1/predictions

    func list(_ request: Request) throws -> Response {
        var filter = LookupStore.PredictionFilter()
        if let provider = request.query["provider"], !provider.isEmpty {
            filter.provider = try LookupRoutes.checked(provider, name: "provider", maxBytes: LookupRoutes.maxProviderBytes)
        }
        if let status = request.query["status"], !status.isEmpty {
            filter.status = try LookupRoutes.checked(status, name: "status", maxBytes: Self.maxStatusBytes)
        }
        if let limit = request.query["limit"] {
            guard let value = Int(limit), (1...LookupStore.maxPredictionPageSize).contains(value) else {
                throw LookupError(.invalidParameter, "limit must be between 1 and \(LookupStore.maxPredictionPageSize)")
            }
            filter.limit = value
        }
        if let before = request.query["before"], !before.isEmpty {
            filter.before = try PredictionCursor(encoded: before)
        }
        let expires = try Presigner.parseExpires(request.query["expires"])
        let page = try lookup.pool.withConnection { try lookup.store.predictions(filter, on: $0) }

        let now = Date()
        let assetCount = page.predictions.reduce(0) { $0 + $1.assets.count }
        var json = JSONWriter(capacity: 256 + page.predictions.count * 512 + assetCount * 1024)
        json.objectStart()
        json.key("predictions")
        json.arrayStart()
        for prediction in page.predictions {
            json.objectStart()
            json.field("provider", prediction.provider)
            json.field("id", prediction.id)
            json.field("status", prediction.status)
            json.field("model", prediction.model)
            json.field("version", prediction.version)
            json.field("error", prediction.error)
            json.field("data_removed", prediction.dataRemoved)
            json.field("created_at", prediction.createdAt)
            json.field("started_at", prediction.startedAt)
            json.field("completed_at", prediction.completedAt)
            json.field("first_seen_at", prediction.firstSeenAt)
            json.field("updated_at", prediction.updatedAt)
            json.key("assets")
            json.arrayStart()
            for asset in prediction.assets {
                let signed = asset.isStored ? lookup.presigner.sign(key: asset.key!, expires: expires, now: now) : nil
                LookupRoutes.write(asset, url: signed, into: &json)
            }
            json.arrayEnd()
            json.objectEnd()
        }
        json.arrayEnd()
        json.field("next_before", page.next?.encoded)
        json.objectEnd()
        return Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: json.bytes)
    }

    // MARK: GET /v1/predictions/{provider}/{id}/outputs/{n}/url

    /// The output route's answer, with its 302 turned into a 200: same parameters (`expires`, `download`),
    /// same refusals (409 while not stored, 410 when lost, 404 unknown), same body `{url, url_expires_at}`.
    func signedURL(_ request: Request) throws -> Response {
        let answer = try lookup.output(request)
        guard answer.status == 302 else { return answer }
        return Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: answer.body)
    }

    // MARK: GET /v1/stats

    /// Always 200 while the daemon runs: a database or bucket outage is what the strip must show, so it is
    /// reported in `checks` (with the figures null when the database did not answer) rather than as an error.
    func stats(_ request: Request) throws -> Response {
        var databaseCheck = "ok"
        var figures: ConsoleStats?
        do {
            figures = try statsMemo.value { try lookup.pool.withConnection { try ConsoleStats.query(on: $0) } }
        } catch let error as PQError where [.poolTimeout, .connectionFailed, .connectionLost, .poolClosed].contains(error.code) {
            databaseCheck = "\(error)"
        }
        let storageCheck = storageProbe.status()

        var json = JSONWriter(capacity: 512)
        json.objectStart()
        json.field("at", figures?.at ?? Date().rfc3339())
        json.field("pending", figures?.pending)
        json.field("in_flight", figures?.inFlight)
        json.field("failed", figures?.failed)
        json.field("expired", figures?.expired)
        json.field("deleted", figures?.deleted)
        json.field("stored_today", figures?.storedToday)
        json.field("deadline_misses_today", figures?.deadlineMissesToday)
        json.field("overdue", figures?.overdue)
        json.field("earliest_deadline", figures?.earliestDeadline)
        json.key("checks")
        json.objectStart()
        json.field("database", databaseCheck)
        json.field("storage", storageCheck)
        json.objectEnd()
        json.objectEnd()
        return Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: json.bytes)
    }
}

/// The last statistics for up to a second: every open console polls every 5 s, and however many there are,
/// the database answers the statistics query at most once a second.
final class StatsMemo: Sendable {
    private let last = Mutex<(at: ContinuousClock.Instant, stats: ConsoleStats)?>(nil)
    let lifetime: Duration = .seconds(1)

    func value(_ read: () throws -> ConsoleStats) throws -> ConsoleStats {
        let now = ContinuousClock.now
        if let previous = last.withLock({ $0 }), now - previous.at < lifetime { return previous.stats }
        let stats = try read()
        last.withLock { $0 = (now, stats) }
        return stats
    }
}

/// Whether the bucket accepts our signed requests, as the health strip shows it: probed at most every 5 s,
/// by one caller at a time. While a probe runs (a store that hangs keeps it for up to its timeouts) other
/// callers get the previous answer at once instead of waiting and holding a lookup slot each.
final class StorageProbe: Sendable {
    let storage: S3Client
    let freshFor: Duration = .seconds(5)
    private struct State {
        var result: String?
        var at: ContinuousClock.Instant?
        var probing = false
    }
    private let state = Mutex(State())

    init(storage: S3Client) { self.storage = storage }

    /// "ok", or why the bucket refused (the error names the operation and status, never a credential).
    func status() -> String {
        let now = ContinuousClock.now
        let cached: String? = state.withLock { state in
            if let at = state.at, let result = state.result, now - at < freshFor { return result }
            if state.probing { return state.result ?? "checking" }
            state.probing = true
            return nil
        }
        if let cached { return cached }
        let result: String
        do {
            try storage.headBucket()
            result = "ok"
        } catch {
            result = "\(error)"
        }
        state.withLock { $0 = State(result: result, at: ContinuousClock.now, probing: false) }
        return result
    }
}
