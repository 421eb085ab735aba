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

    /// Deferred, not blocking: the signature check runs on the event thread and the delivery joins the
    /// next group commit; the answer goes out when the batcher calls back. No thread waits per webhook,
    /// which is what lets 64 connections share two cores with PostgreSQL (bench/intake).
    public func register(on router: inout Router, maxBodyBytes: Int) {
        router.add("POST", "/v1/webhooks/replicate", maxBodyBytes: maxBodyBytes, deferred: { request in self.handle(request) })
    }

    func handle(_ request: Request) -> DeferredAnswer {
        let started = ContinuousClock.now
        let envelope = WebhookEnvelope(provider: "replicate", logger: logger)
        let delivery: ReplicateIntake.Delivery
        switch envelope.delivery(from: request, verifier: verifier()) {
        case .success(let verified): delivery = verified
        case .failure(let refusal):
            AfterimageMetrics.webhookAnswered(provider: "replicate", status: refusal.response.status, since: started)
            return .now(refusal.response)
        }
        return .later { [batcher, lookupCache] responder in
            batcher.submit(delivery) { result in
                let response: Response
                switch result {
                case .success(let outcome):
                    if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: ReplicateIntake.provider, id: id)) }
                    response = envelope.response(for: outcome, delivery: delivery, kind: "a prediction")
                case .failure(let error):
                    response = envelope.databaseFailure(error)
                }
                AfterimageMetrics.webhookAnswered(provider: "replicate", status: response.status, since: started)
                responder.respond(response)
            }
        }
    }
}
