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

    /// Bodies above this are verified off the event thread: an HMAC over megabytes (`http.max_body_bytes`
    /// may be raised) would hold up every other connection that thread serves.
    static let eventThreadBodyLimit = 256 * 1024

    func handle(_ request: Request) -> DeferredAnswer {
        let started = ContinuousClock.now
        guard request.body.count <= Self.eventThreadBodyLimit else {
            return .later { responder in
                DispatchQueue.global().async {
                    switch self.verify(request, started: started) {
                    case .success(let delivery): self.record(delivery, started: started, answer: responder)
                    case .failure(let refusal): responder.respond(refusal.response)
                    }
                }
            }
        }
        switch verify(request, started: started) {
        case .success(let delivery): return .later { responder in self.record(delivery, started: started, answer: responder) }
        case .failure(let refusal): return .now(refusal.response)
        }
    }

    /// The signature check; a refusal is counted here.
    private func verify(_ request: Request, started: ContinuousClock.Instant) -> Result<ReplicateIntake.Delivery, WebhookRefusal> {
        let result = WebhookEnvelope(provider: "replicate", logger: logger).delivery(from: request, verifier: verifier())
        if case .failure(let refusal) = result {
            AfterimageMetrics.webhookAnswered(provider: "replicate", status: refusal.response.status, since: started)
        }
        return result
    }

    /// Hands the delivery to the next group commit; `responder` is answered after COMMIT (or with 503). A
    /// body that may carry data: outputs is first decoded into the spool and fsynced, on another thread:
    /// that is disk work the event thread must not wait for.
    private func record(_ delivery: ReplicateIntake.Delivery, started: ContinuousClock.Instant, answer responder: Responder) {
        guard ReplicateIntake.mayCarryDataOutputs(delivery.body) else {
            submit(delivery, started: started, answer: responder)
            return
        }
        DispatchQueue.global().async {
            let spooled: ReplicateIntake.Delivery
            do {
                spooled = try self.batcher.intake.spoolingDataOutputs(of: delivery)
            } catch {
                // The spool could not take the bytes (disk full, permissions): nothing was acknowledged.
                self.logger.error("webhook not recorded: spool failure", metadata: ["provider": "replicate", "error": "\(error)"])
                let response = Response.error(status: 503, code: "spool_unavailable", message: "the delivery was not recorded; retry later",
                                              headers: [("Retry-After", "30")])
                AfterimageMetrics.webhookAnswered(provider: "replicate", status: response.status, since: started)
                responder.respond(response)
                return
            }
            self.submit(spooled, started: started, answer: responder)
        }
    }

    private func submit(_ delivery: ReplicateIntake.Delivery, started: ContinuousClock.Instant, answer responder: Responder) {
        let envelope = WebhookEnvelope(provider: "replicate", logger: logger)
        batcher.submit(delivery) { [lookupCache, batcher] result in
            let response: Response
            switch result {
            case .success(let outcome):
                if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: ReplicateIntake.provider, id: id)) }
                response = envelope.response(for: outcome, delivery: delivery, kind: "a prediction")
            case .failure(let error):
                // Not acknowledged: the decoded files go (if the commit did happen after all, the workers decode
                // the outputs from the recorded delivery instead).
                batcher.intake.removeSpoolFiles(of: delivery)
                response = envelope.databaseFailure(error)
            }
            AfterimageMetrics.webhookAnswered(provider: "replicate", status: response.status, since: started)
            responder.respond(response)
        }
    }
}
