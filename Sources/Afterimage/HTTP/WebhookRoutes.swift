import Foundation
import Logging
import MicroHTTP
import PQ

/// `POST /v1/webhooks/replicate`: signature first (401 writes nothing), then one transaction, then 2xx.
public struct ReplicateWebhookRoute: Sendable {
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let batcher: IntakeBatcher
    /// Told about every recorded prediction, so a lookup never serves an answer older than this write.
    let lookupCache: LookupCache?
    let logger: Logger

    /// `verifier` is read per request so a reload (SIGHUP) can swap secrets without a restart.
    public init(verifier: @escaping @Sendable () -> StandardWebhooksVerifier, batcher: IntakeBatcher,
                lookupCache: LookupCache? = nil, logger: Logger) {
        self.verifier = verifier
        self.batcher = batcher
        self.lookupCache = lookupCache
        self.logger = logger
    }

    public func register(on router: inout Router, maxBodyBytes: Int) {
        router.add("POST", "/v1/webhooks/replicate", maxBodyBytes: maxBodyBytes,
                   AfterimageMetrics.instrumentWebhook(provider: "replicate") { request in self.handle(request) })
    }

    func handle(_ request: Request) -> Response {
        let envelope = WebhookEnvelope(provider: "replicate", logger: logger)
        let delivery: ReplicateIntake.Delivery
        switch envelope.delivery(from: request, verifier: verifier()) {
        case .success(let verified): delivery = verified
        case .failure(let refusal): return refusal.response
        }
        do {
            let outcome = try batcher.record(delivery)
            if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: ReplicateIntake.provider, id: id)) }
            return envelope.response(for: outcome, delivery: delivery, kind: "a prediction")
        } catch {
            return envelope.databaseFailure(error)
        }
    }
}
