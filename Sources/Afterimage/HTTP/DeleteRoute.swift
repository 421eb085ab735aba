import Foundation
import Logging
import MicroHTTP
import PQ

/// `DELETE /v1/predictions/{provider}/{id}`: deletes a prediction's data on demand (privacy), keeping a
/// tombstone (see `PredictionDeleter`). Needs a token from `api.admin_tokens` or `api.archive_tokens`: 401
/// without one, 403 for a token that may only read (`api.tokens`). Idempotent: a second delete answers 200
/// with nothing to do (and purges again if an earlier purge is still due). 404 for an unknown prediction.
public struct DeleteRoute: Sendable {
    let pool: Pool
    let deleter: PredictionDeleter
    let deleteTokens: @Sendable () -> BearerAuthenticator
    let readTokens: @Sendable () -> BearerAuthenticator
    let cache: LookupCache?
    let logger: Logger

    public init(
        pool: Pool, deleter: PredictionDeleter, deleteTokens: @escaping @Sendable () -> BearerAuthenticator,
        readTokens: @escaping @Sendable () -> BearerAuthenticator, cache: LookupCache? = nil, logger: Logger
    ) {
        self.pool = pool
        self.deleter = deleter
        self.deleteTokens = deleteTokens
        self.readTokens = readTokens
        self.cache = cache
        self.logger = logger
    }

    public func register(on router: inout Router) {
        router.add("DELETE", "/v1/predictions/{provider}/{id}", maxBodyBytes: 1024) { request in try self.handle(request) }
    }

    func handle(_ request: Request) throws -> Response {
        try authorize(request)
        let (provider, id) = try LookupRoutes.predictionParameters(request)
        guard
            let outcome = try pool.withConnection({ connection in
                try deleter.delete(provider: ProviderName(rawValue: provider), id: id, on: connection)
            })
        else {
            throw LookupError(.predictionNotFound, "no prediction \(provider)/\(id)")
        }
        cache?.invalidate(LookupCache.Key(provider: provider, id: id))
        logger.notice(
            "prediction deleted",
            metadata: [
                "prediction": "\(provider)/\(id)", "already_deleted": "\(outcome.alreadyDeleted)", "assets": "\(outcome.assets)",
                "fenced": "\(outcome.fencedTransfers)", "objects": "\(outcome.objectsRemoved)", "bodies": "\(outcome.bodiesCleared)",
            ])
        return Self.answer(provider: provider, id: id, outcome)
    }

    static func answer(provider: String, id: String, _ outcome: PredictionDeleter.Outcome) -> Response {
        var json = JSONWriter(capacity: 256)
        json.objectStart()
        json.field("provider", provider)
        json.field("prediction_id", id)
        json.field("status", outcome.alreadyDeleted && outcome.assets == 0 ? "already_deleted" : "deleted")
        json.field("assets", outcome.assets)
        json.field("objects_removed", outcome.objectsRemoved)
        json.field("uploads_aborted", outcome.uploadsAborted)
        json.field("bodies_cleared", outcome.bodiesCleared)
        json.field("purge_pending", outcome.purgePending)
        json.objectEnd()
        return .json(raw: json.bytes)
    }

    /// 401 without a token or with an unknown one; 403 for a genuine read-only token. Nothing about the
    /// token is logged.
    func authorize(_ request: Request) throws(DeleteRefusal) {
        let authorization = request.header("authorization")
        switch deleteTokens().check(authorization: authorization) {
        case .allowed: return
        case .missing: throw DeleteRefusal.token(.missing)
        case .invalid:
            if readTokens().check(authorization: authorization) == .allowed {
                logger.notice("delete refused: a read-only token")
                throw DeleteRefusal.readOnly
            }
            logger.notice("delete refused: invalid bearer token")
            throw DeleteRefusal.token(.invalid)
        }
    }
}

/// Why a delete was refused before anything was read.
enum DeleteRefusal: ResponseError {
    case token(TokenRefusal)
    /// A token from `api.tokens` only: it may read, not delete.
    case readOnly

    var status: Int {
        switch self {
        case .token(let refusal): refusal.status
        case .readOnly: 403
        }
    }

    var errorCode: String {
        switch self {
        case .token(let refusal): refusal.errorCode
        case .readOnly: "token_not_permitted"
        }
    }

    var message: String {
        switch self {
        case .token(let refusal): refusal.message
        case .readOnly: "this token may look up outputs but not delete them (it is in neither api.admin_tokens nor api.archive_tokens)"
        }
    }

    var headers: [(String, String)] {
        switch self {
        case .token(let refusal): refusal.headers
        case .readOnly: []
        }
    }
}
