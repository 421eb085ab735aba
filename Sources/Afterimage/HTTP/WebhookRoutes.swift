import Foundation
import Logging
import MicroHTTP
import PQ

/// `POST /v1/webhooks/replicate`: signature first (401 writes nothing), then one transaction, then 2xx.
public struct ReplicateWebhookRoute: Sendable {
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let batcher: IntakeBatcher
    let logger: Logger

    /// `verifier` is read per request so a reload (SIGHUP) can swap secrets without a restart.
    public init(verifier: @escaping @Sendable () -> StandardWebhooksVerifier, batcher: IntakeBatcher, logger: Logger) {
        self.verifier = verifier
        self.batcher = batcher
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
            return envelope.response(for: try batcher.record(delivery), delivery: delivery, kind: "a prediction")
        } catch {
            return envelope.databaseFailure(error)
        }
    }
}
