import Crypto
import Foundation
import Logging
import MicroHTTP
import PQ

/// `POST /v1/archives`: an app hands over URLs that will expire, and they are archived like any provider's
/// outputs (`archive/{id}/{n}{.ext}`, looked up at `/v1/predictions/archive/{id}`).
///
/// Needs a token from `api.archive_tokens` (401 without one; 403 for a token that may only read, from
/// `api.tokens`: it is genuine but not allowed to queue downloads). Answers 202 once the request is
/// committed; the same id with the same URLs again is 200 and nothing is fetched twice; the same id with
/// other URLs is 409; a URL the fetch policy refuses is 422 naming it, and nothing is recorded.
public struct ArchiveAPIRoute: Sendable {
    let pool: Pool
    /// The shared intake, with `ArchiveAPIProvider` among its providers.
    let recorder: DeliveryRecorder
    /// `fetch.*`, read per request so a reload applies at once.
    let policy: @Sendable () -> FetchPolicy
    let archiveTokens: @Sendable () -> BearerAuthenticator
    let readTokens: @Sendable () -> BearerAuthenticator
    let lookupCache: LookupCache?
    let logger: Logger

    public static let path = "/v1/archives"
    /// Room for 100 long signed URLs and 16 KiB of metadata.
    static let maxBodyBytes = 1 << 20

    public init(
        pool: Pool, recorder: DeliveryRecorder, policy: @escaping @Sendable () -> FetchPolicy,
        archiveTokens: @escaping @Sendable () -> BearerAuthenticator, readTokens: @escaping @Sendable () -> BearerAuthenticator,
        lookupCache: LookupCache? = nil, logger: Logger
    ) {
        self.pool = pool
        self.recorder = recorder
        self.policy = policy
        self.archiveTokens = archiveTokens
        self.readTokens = readTokens
        self.lookupCache = lookupCache
        self.logger = logger
    }

    public func register(on router: inout Router) {
        if !archiveTokens().isConfigured {
            logger.notice("api.archive_tokens is empty: POST /v1/archives refuses every request")
        }
        router.add("POST", Self.path, maxBodyBytes: Self.maxBodyBytes) { request in
            let started = ContinuousClock.now
            let response = self.handle(request)
            AfterimageMetrics.webhookAnswered(provider: .archive, status: response.status, since: started)
            return response
        }
    }

    func handle(_ request: Request, now: Date = Date()) -> Response {
        if let refusal = refusal(request) { return refusal }
        let archive: ArchiveRequest
        do throws(ArchiveRequest.Invalid) {
            archive = try ArchiveRequest.parse(request.body)
        } catch {
            return .error(status: 400, code: "invalid_request", message: error.message)
        }
        let policy = policy()
        for (index, url) in archive.urls.enumerated() {
            if let refusal = policy.refusal(for: url) {
                // Named by position and the policy's reason (scheme or host), never echoed whole: signed URLs
                // carry credentials in their query.
                return .error(status: 422, code: "url_refused", message: "urls[\(index)] is refused: \(refusal)")
            }
        }
        let digest = SHA256.hash(data: request.body).map { String(format: "%02x", $0) }.joined()
        let delivery = WebhookDelivery(
            provider: .archive, deliveryID: "\(archive.id):\(digest)", timestamp: nil,
            body: request.body, source: .api, receivedAt: now)
        do {
            let result = try pool.withConnection { connection in
                try connection.transaction { tx in try record(archive, delivery, in: tx) }
            }
            switch result {
            case .recorded(let assets):
                lookupCache?.invalidate(.init(provider: ProviderName.archive.rawValue, id: archive.id))
                logger.info("archive request accepted", metadata: ["prediction": "\(archive.id)", "assets": "\(assets)"])
                return Self.answer(status: 202, id: archive.id, assets: assets)
            case .repeated(let assets):
                return Self.answer(status: 200, id: archive.id, assets: assets)
            case .conflict:
                return .error(
                    status: 409, code: "archive_conflict",
                    message: "archive \(archive.id) exists with other URLs; use another id")
            }
        } catch let error as PQError where error.isUnavailable {
            logger.error("archive request not recorded: database unavailable", metadata: ["error": "\(error)"])
            return .error(
                status: 503, code: "database_unavailable", message: "the request was not recorded; retry later",
                headers: [("Retry-After", "5")])
        } catch {
            logger.error("archive request not recorded", metadata: ["error": "\(error)"])
            return .error(status: 500, code: "internal_error", message: "the request was not recorded")
        }
    }

    enum Recorded: Equatable {
        case recorded(assets: Int)
        /// The id is known with these very URLs: nothing new.
        case repeated(assets: Int)
        /// The id is known with other URLs.
        case conflict
    }

    /// Inside one transaction: requests for the same id take turns (an advisory lock on the id), so two at
    /// once cannot both find it new.
    func record(_ archive: ArchiveRequest, _ delivery: WebhookDelivery, in tx: Connection) throws -> Recorded {
        try tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", ["archive/" + archive.id])
        if let row = try tx.query(
            "SELECT output::text FROM predictions WHERE provider = $1 AND id = $2",
            [ProviderName.archive, archive.id]
        ).first {
            let recorded = try row.decode(0, as: String?.self)
            let urls = recorded.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String] }
            return urls == archive.urls ? .repeated(assets: archive.urls.count) : .conflict
        }
        let (outcomes, _) = try recorder.record([.init(delivery)], expectingDuplicates: true, in: tx)
        switch outcomes[0] {
        case .accepted(_, let assets): return .recorded(assets: assets)
        case .duplicate: return .repeated(assets: archive.urls.count)
        case .unparseable(let message): throw ArchiveRequest.Invalid(message: message)
        }
    }

    /// 401 without a token or with an unknown one; 403 for a token that may read (`api.tokens`) but not
    /// archive. Nothing about the token is logged.
    func refusal(_ request: Request) -> Response? {
        let authorization = request.header("authorization")
        switch archiveTokens().check(authorization: authorization) {
        case .allowed:
            return nil
        case .missing:
            return .error(
                status: 401, code: "token_missing", message: "an Authorization: Bearer token from api.archive_tokens is required",
                headers: [("WWW-Authenticate", #"Bearer realm="afterimage""#)])
        case .invalid:
            if readTokens().check(authorization: authorization) == .allowed {
                logger.notice("archive request refused: a read-only token")
                return .error(
                    status: 403, code: "token_not_permitted",
                    message: "this token may look up outputs but not archive URLs (it is not in api.archive_tokens)")
            }
            logger.notice("archive request refused: invalid bearer token")
            return .error(
                status: 401, code: "token_invalid", message: "the bearer token is not valid",
                headers: [("WWW-Authenticate", #"Bearer realm="afterimage", error="invalid_token""#)])
        }
    }

    static func answer(status: Int, id: String, assets: Int) -> Response {
        var json = JSONWriter(capacity: 96 + id.utf8.count)
        json.objectStart()
        json.field("assets", assets)
        json.field("prediction_id", id)
        json.field("provider", ProviderName.archive.rawValue)
        json.objectEnd()
        return .json(status: status, raw: json.bytes)
    }
}

extension ArchiveRequest.Invalid: CustomStringConvertible {
    var description: String { message }
}
