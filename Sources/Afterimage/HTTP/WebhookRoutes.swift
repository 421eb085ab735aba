import Foundation
import Logging
import MicroHTTP
import PQ

/// `POST /v1/webhooks/replicate`: signature first (401 writes nothing, and a request without signature headers
/// is refused before its body is read), then one transaction, then 2xx.
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

    /// Deferred, not blocking: the delivery joins the next group commit and the answer goes out when the
    /// batcher calls back. No thread waits per webhook, which is what lets 64 connections share two cores
    /// with PostgreSQL (bench/intake). The signature is checked by the gate while the body arrives (401
    /// before any body is read when the headers are missing or stale), so the handler only records; a body
    /// large enough to have been spilled to disk reaches it on a handler pool thread, not the event thread.
    public func register(on router: inout Router, maxBodyBytes: Int) {
        let gate = WebhookGate(provider: "replicate", verifier: verifier, logger: logger)
        router.add("POST", "/v1/webhooks/replicate", maxBodyBytes: maxBodyBytes, gate: gate.gate,
                   deferred: { request in self.handle(request) })
    }

    func handle(_ request: Request) -> DeferredAnswer {
        let started = ContinuousClock.now
        switch WebhookEnvelope(provider: "replicate", logger: logger).delivery(from: request) {
        case .success(let delivery):
            // A body that may carry data: outputs is decoded into the spool and fsynced first: disk work the
            // event thread must not wait for, so it runs on the handler pool.
            guard ReplicateIntake.mayCarryDataOutputs(delivery.body) else {
                return .later { responder in self.submit(delivery, started: started, answer: responder) }
            }
            return .laterOnPool { responder in self.spoolThenSubmit(delivery, started: started, answer: responder) }
        case .failure(let refusal):
            AfterimageMetrics.webhookAnswered(provider: "replicate", status: refusal.response.status, since: started)
            return .now(refusal.response)
        }
    }

    /// On a handler pool thread: the body's data: outputs decoded into the spool and fsynced, then the
    /// delivery handed to the next group commit. Nothing is acknowledged when the spool cannot take them.
    private func spoolThenSubmit(_ delivery: ReplicateIntake.Delivery, started: ContinuousClock.Instant, answer responder: Responder) {
        let spooled: ReplicateIntake.Delivery
        do {
            spooled = try batcher.intake.spoolingDataOutputs(of: delivery)
        } catch {
            // The spool could not take the bytes (disk full, permissions): nothing was acknowledged.
            logger.error("webhook not recorded: spool failure", metadata: ["provider": "replicate", "error": "\(error)"])
            let response = Response.error(status: 503, code: "spool_unavailable", message: "the delivery was not recorded; retry later",
                                          headers: [("Retry-After", "30")])
            AfterimageMetrics.webhookAnswered(provider: "replicate", status: response.status, since: started)
            responder.respond(response)
            return
        }
        submit(spooled, started: started, answer: responder)
    }

    /// Hands the delivery to the next group commit; `responder` is answered after COMMIT (or with 503).
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
