import Foundation
import Logging
import MicroHTTP
import PQ

/// The lookup API: predictions and their outputs as presigned URLs, the asset listing and retry.
///
/// Every route needs a bearer token (`api.tokens`) and nothing else: webhook signatures mean nothing here.
/// A lookup of stored outputs is one SQL statement plus local signing; the bytes go from the bucket to the
/// client without passing through the daemon.
public struct LookupRoutes: Sendable {
    let pool: Pool
    let presigner: Presigner
    /// Read per request so a reload (SIGHUP) can change tokens without a restart.
    let authenticator: @Sendable () -> BearerAuthenticator
    let logger: Logger
    /// Settled predictions served from memory; see `LookupCache` for what keeps it correct.
    let cache: LookupCache
    let refresher: LookupRefresher
    /// Reads the lookups the cache cannot answer, many per statement; nil or not running: each lookup
    /// reads on a pool thread of its own (as route tests that start no batcher do).
    let batcher: LookupBatcher?
    let store = LookupStore()
    /// How an error no route error describes is answered (a database outage is 503 + Retry-After), for
    /// lookups answered from a batcher's thread rather than by the router.
    let unhandled: UnhandledErrorRenderer

    /// Bounds on path parameters: they become SQL parameters and log metadata.
    static let maxProviderBytes = 64
    static let maxIDBytes = 256
    /// What a client should wait while an asset is in flight, or pending and already due.
    static let defaultRetryAfter = 2

    /// `refresher` re-reads entries ahead of their expiry; the daemon starts and stops it with its other
    /// parts (one that is never started refreshes nothing, and entries simply expire).
    public init(
        pool: Pool, presigner: Presigner, authenticator: @escaping @Sendable () -> BearerAuthenticator,
        cache: LookupCache = LookupCache(lifetimeSeconds: 0), refresher: LookupRefresher? = nil,
        batcher: LookupBatcher? = nil, logger: Logger
    ) {
        self.pool = pool
        self.presigner = presigner
        self.authenticator = authenticator
        self.cache = cache
        self.logger = logger
        self.refresher = refresher ?? LookupRefresher(pool: pool, cache: cache)
        self.batcher = batcher
        unhandled = UnhandledErrors.renderer(logger: logger)
    }

    public func register(on router: inout Router) {
        if !authenticator().isConfigured {
            logger.warning("api.tokens is empty: the lookup API refuses every request with 401")
        }
        router.add("GET", "/v1/predictions/{provider}/{id}", deferred: { request in try self.predictionAnswer(request) })
        router.add("GET", "/v1/predictions/{provider}/{id}/outputs/{n}") { request in try self.guarded(request, self.output) }
        router.add("GET", "/v1/assets") { request in try self.guarded(request, self.list) }
        router.add("POST", "/v1/assets/{id}/retry", maxBodyBytes: 1024) { request in try self.guarded(request, self.retry) }
        ConsoleAPIRoutes(lookup: self).register(on: &router)  // the listing, stats and signed-URL routes the console reads
    }

    // MARK: Authentication

    /// How many lookups run on pool threads at once; the others wait their turn in order. With many
    /// runnable threads on few cores the scheduler, not arrival order, decides who runs next (bench/lookup:
    /// p99 from 14–17 ms to 8–10 ms when this was added, before the event-thread server). Work here is
    /// short (memory, one prepared query), so a small multiple of the cores keeps them busy.
    ///
    /// The handler pool does not make this redundant: it bounds threads by `http.connection_limit`, not by
    /// cores. Measured again without it (issue 14.2, bench/lookup/README.md): throughput the same within the
    /// noise, p99 several times worse (54–925 ms against 27–81 ms), so it stays.
    static let concurrentLookups = max(4, 4 * ProcessInfo.processInfo.activeProcessorCount)
    private let admission = DispatchSemaphore(value: LookupRoutes.concurrentLookups)

    /// Admission, then the token (nothing is read before it passes), then the handler. What it throws is
    /// the answer: a `LookupError` or `TokenRefusal` renders itself; anything else goes to the daemon's
    /// error renderer (a database outage is 503 + Retry-After).
    func guarded(_ request: Request, _ handler: (Request) throws -> Response) throws -> Response {
        admission.wait()
        defer { admission.signal() }
        try authorize(request)
        return try handler(request)
    }

    /// The answer for a settled prediction in the cache, on the event thread (no database, no waiting);
    /// nil hands the request to `prediction` on a pool thread. A refused token is answered here too.
    func fromMemory(_ request: Request) throws -> Response? {
        guard cache.isEnabled else { return nil }
        try authorize(request)
        let (provider, id) = try Self.predictionParameters(request)
        let expires = try Presigner.parseExpires(request.query["expires"])
        guard let (view, refresh) = cache.lookup(LookupCache.Key(provider: provider, id: id)) else { return nil }
        if refresh { refresher.refresh(provider: provider, id: id) }
        try Self.refuseDeleted(view)
        return render(view, expires: expires)
    }

    /// `GET /v1/predictions/{provider}/{id}`, decided on the event thread: a settled prediction in the cache
    /// is answered at once; any other lookup joins the batcher's next read and is answered from its thread
    /// (no thread waits for it). Without a running batcher it reads on a pool thread, as before.
    func predictionAnswer(_ request: Request) throws -> DeferredAnswer {
        if let response = try fromMemory(request) { return .now(response) }
        guard let batcher, batcher.isRunning else {
            return .laterOnPool { responder in responder.respond(try self.guarded(request, self.prediction)) }
        }
        if !cache.isEnabled { try authorize(request) }  // fromMemory checked the token when the cache is on
        let (provider, id) = try Self.predictionParameters(request)
        let expires = try Presigner.parseExpires(request.query["expires"])
        let head = RequestHead(method: request.method, path: request.path, headers: [:], contentLength: nil)
        return .later { responder in
            batcher.submit(LookupCache.Key(provider: provider, id: id)) { result in
                responder.respond(self.answer(result, provider: provider, id: id, expires: expires, head: head))
            }
        }
    }

    /// What a batched read means for its client: the prediction with freshly signed URLs, 404, or the error's answer.
    func answer(_ result: Result<PredictionView?, any Error>, provider: String, id: String, expires: Int?, head: RequestHead) -> Response {
        switch result {
        case .success(let view?):
            if let deleted = Self.deletedAnswer(view) { return deleted }
            return render(view, expires: expires)
        case .success(nil):
            return LookupError(.predictionNotFound, "no prediction \(provider)/\(id)").response
        case .failure(let error as any ResponseError):
            return error.response
        case .failure(is LookupBatcher.Stopped):
            return .error(
                status: 503, code: "stopping", message: "the daemon is stopping; retry later",
                headers: [("Retry-After", "1")])
        case .failure(let error):
            return unhandled(error, head)
        }
    }

    /// Returns when the request carries a configured token; throws the 401 otherwise.
    func authorize(_ request: Request) throws(TokenRefusal) {
        switch authenticator().check(authorization: request.header("authorization")) {
        case .allowed:
            return
        case .missing:
            throw TokenRefusal.missing
        case .invalid:
            logger.notice("lookup refused: invalid bearer token", metadata: ["path": "\(request.path)"])
            throw TokenRefusal.invalid
        }
    }

    // MARK: Routes

    func prediction(_ request: Request) throws -> Response {
        let (provider, id) = try Self.predictionParameters(request)
        let expires = try Presigner.parseExpires(request.query["expires"])
        let view = try predictionView(provider: provider, id: id)
        try Self.refuseDeleted(view)
        return render(view, expires: expires)
    }

    /// The 410 of a tombstone, or nil for a kept prediction (`refuseDeleted` for a batched answer).
    static func deletedAnswer(_ view: PredictionView) -> Response? {
        do throws(LookupError) {
            try refuseDeleted(view)
            return nil
        } catch {
            return error.response
        }
    }

    /// A tombstone is answered 410 `deleted`: the prediction existed, and its data is gone for good.
    static func refuseDeleted(_ view: PredictionView) throws(LookupError) {
        if let deletedAt = view.deletedAt {
            throw LookupError(.deleted, "prediction \(view.provider)/\(view.id) was deleted at \(deletedAt)")
        }
    }

    /// The prediction as JSON, each stored asset with a URL signed now.
    func render(_ view: PredictionView, expires: Int?) -> Response {
        let now = Date()
        var json = JSONWriter(capacity: 512 + view.assets.count * 768)
        json.objectStart()
        json.field("provider", view.provider)
        json.field("id", view.id)
        json.field("status", view.status)
        json.field("model", view.model)
        json.field("version", view.version)
        json.key("input")
        json.raw(view.inputJSON)
        json.field("error", view.error)
        json.field("data_removed", view.dataRemoved)
        json.field("created_at", view.createdAt)
        json.field("started_at", view.startedAt)
        json.field("completed_at", view.completedAt)
        json.field("first_seen_at", view.firstSeenAt)
        json.field("updated_at", view.updatedAt)
        json.key("assets")
        json.arrayStart()
        for asset in view.assets {
            let signed = asset.isStored ? presigner.sign(key: asset.key!, expires: expires, now: now) : nil
            Self.write(asset, url: signed, into: &json)
        }
        json.arrayEnd()
        json.objectEnd()
        return Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: json.bytes)
    }

    func output(_ request: Request) throws -> Response {
        let (provider, id) = try Self.predictionParameters(request)
        guard let text = request.pathParameters["n"], text.utf8.count <= 6, let index = Int(text), index >= 0 else {
            throw LookupError(.invalidParameter, "the output index must be a whole number from 0")
        }
        let expires = try Presigner.parseExpires(request.query["expires"])
        let download = try Presigner.validateDownloadName(request.query["download"])
        let found: AssetView?
        if let cached = cache.view(for: LookupCache.Key(provider: provider, id: id)) {
            found = cached.assets.first { $0.index == index }  // in (index, id) order, like the query
        } else {
            found = try pool.withConnection { try store.output(provider: provider, predictionID: id, index: index, on: $0) }
        }
        guard let asset = found else {
            throw LookupError(.outputNotFound, "no output \(index) of prediction \(provider)/\(id)")
        }
        switch asset.state {
        case .stored where asset.key != nil:
            let signed = presigner.sign(key: asset.key!, expires: expires, downloadName: download)
            // The body repeats the URL for clients that do not follow redirects.
            var json = JSONWriter(capacity: 1024)
            json.objectStart()
            json.field("url", signed.url)
            json.field("url_expires_at", signed.expiresAt.rfc3339())
            json.objectEnd()
            return Response(
                status: 302,
                headers: [
                    ("Location", signed.url), ("Cache-Control", "no-store"),
                    ("Content-Type", "application/json"),
                ], body: json.bytes)
        case .failed:
            throw LookupError(.assetFailed, "output \(index) could not be archived: \(asset.failureReason ?? "unknown reason")")
        case .expired:
            throw LookupError(
                .assetExpired, "output \(index) expired at the provider before it was archived: \(asset.failureReason ?? "unknown reason")")
        case .deleted:
            throw LookupError(.deleted, "output \(index) of prediction \(provider)/\(id) was deleted")
        default:
            let wait = asset.state == .pending ? max(Self.defaultRetryAfter, asset.secondsUntilNextAttempt) : Self.defaultRetryAfter
            throw LookupError(
                .assetNotReady, "output \(index) is \(asset.state == .pending ? "waiting to be archived" : "being archived")",
                retryAfter: min(wait, 3600))
        }
    }

    func list(_ request: Request) throws -> Response {
        var filter = LookupStore.Filter()
        if let state = request.query["state"], !state.isEmpty {
            guard LookupStore.states.contains(state) else {
                throw LookupError(.invalidParameter, "state must be one of pending, in_flight, stored, failed, expired, deleted")
            }
            filter.state = state
        }
        if let provider = request.query["provider"], !provider.isEmpty {
            filter.provider = try Self.checked(provider, name: "provider", maxBytes: Self.maxProviderBytes)
        }
        if let limit = request.query["limit"] {
            guard let value = Int(limit), (1...LookupStore.maxPageSize).contains(value) else {
                throw LookupError(.invalidParameter, "limit must be between 1 and \(LookupStore.maxPageSize)")
            }
            filter.limit = value
        }
        if let after = request.query["after"], !after.isEmpty {
            guard let value = Int64(after), value >= 0 else {
                throw LookupError(.invalidParameter, "after must be the next_after value of the previous page")
            }
            filter.after = value
        }
        let page = try pool.withConnection { try store.assets(filter, on: $0) }
        var json = JSONWriter(capacity: 256 + page.assets.count * 512)
        json.objectStart()
        json.key("assets")
        json.arrayStart()
        for asset in page.assets { Self.write(asset, url: nil, into: &json) }
        json.arrayEnd()
        json.field("next_after", page.nextAfter)
        json.objectEnd()
        return .json(raw: json.bytes)
    }

    func retry(_ request: Request) throws -> Response {
        guard let text = request.pathParameters["id"], text.utf8.count <= 19, let id = Int64(text), id > 0 else {
            throw LookupError(.invalidParameter, "the asset id must be a positive whole number")
        }
        let asset = try pool.withConnection { try store.retry(assetID: id, on: $0) }
        cache.invalidate(LookupCache.Key(provider: asset.provider, id: asset.predictionID))
        logger.info("asset re-queued", metadata: ["asset": "\(id)", "prediction": "\(asset.provider)/\(asset.predictionID)"])
        var json = JSONWriter()
        Self.write(asset, url: nil, into: &json)
        return .json(raw: json.bytes)
    }

    // MARK: Helpers

    /// From the cache when settled and fresh, otherwise from the database (and then kept if settled).
    func predictionView(provider: String, id: String) throws -> PredictionView {
        let key = LookupCache.Key(provider: provider, id: id)
        if let cached = cache.view(for: key) { return cached }
        let generation = cache.generation()  // before the read: a concurrent invalidation wins
        guard let view = try pool.withConnection({ try store.prediction(provider: provider, id: id, on: $0) }) else {
            throw LookupError(.predictionNotFound, "no prediction \(provider)/\(id)")
        }
        cache.store(view, readAt: generation)
        return view
    }

    static func predictionParameters(_ request: Request) throws(LookupError) -> (String, String) {
        (
            try checked(request.pathParameters["provider"] ?? "", name: "provider", maxBytes: maxProviderBytes),
            try checked(request.pathParameters["id"] ?? "", name: "prediction id", maxBytes: maxIDBytes)
        )
    }

    /// Path and query values go into SQL parameters and log lines: bounded, no control characters.
    static func checked(_ value: String, name: String, maxBytes: Int) throws(LookupError) -> String {
        guard !value.isEmpty, value.utf8.count <= maxBytes, !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw LookupError(.invalidParameter, "\(name) must be 1 to \(maxBytes) bytes without control characters")
        }
        return value
    }

    /// One asset object; `url` only for stored assets of a prediction lookup.
    static func write(_ asset: AssetView, url: Presigner.Signed?, into json: inout JSONWriter) {
        json.objectStart()
        json.field("id", asset.id)
        json.field("provider", asset.provider)
        json.field("prediction_id", asset.predictionID)
        json.field("index", asset.index)
        json.field("pointer", asset.pointer)
        json.field("state", asset.state.rawValue)
        json.field("attempts", asset.attempts)
        json.field("size", asset.size)
        json.field("sha256", asset.sha256)
        json.field("content_type", asset.contentType)
        json.field("key", asset.key)
        json.field("failure_reason", asset.failureReason)
        json.field("created_at", asset.createdAt)
        json.field("updated_at", asset.updatedAt)
        json.field("stored_at", asset.storedAt)
        json.field("source_kind", asset.sourceKind)
        json.field("source_url", asset.sourceURL)
        json.field("finish_reason", asset.finishReason)
        json.field("seed", asset.seed)
        if let url {
            json.field("url", url.url)
            json.field("url_expires_at", url.expiresAt.rfc3339())
        }
        json.objectEnd()
    }
}
