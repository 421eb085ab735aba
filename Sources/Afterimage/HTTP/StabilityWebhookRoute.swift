import Foundation
import Logging
import MicroHTTP
import Primitives
import PQ

/// `POST /v1/webhooks/stability`: what apps forward from Stability AI, signed with the Stability secret
/// (Standard Webhooks). Signature first (401 writes nothing); inline bytes are on disk and the delivery
/// committed before the 2xx.
public struct StabilityWebhookRoute: Sendable {
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let intake: StabilityIntake
    let pool: Pool
    /// Told about every recorded prediction, so a lookup never serves an answer older than this write.
    let lookupCache: LookupCache?
    let logger: Logger

    /// `verifier` is read per request so a reload can swap secrets without a restart.
    public init(verifier: @escaping @Sendable () -> StandardWebhooksVerifier, intake: StabilityIntake, pool: Pool,
                lookupCache: LookupCache? = nil, logger: Logger) {
        self.verifier = verifier
        self.intake = intake
        self.pool = pool
        self.lookupCache = lookupCache
        self.logger = logger
    }

    /// `maxBodyBytes` is `http.stability_max_body_bytes`: inline videos are large.
    /// The gate checks the signature headers before the body is read and the signature while it arrives,
    /// so `handle` sees only verified bodies. A body spilled to disk while it arrived (over 1 MiB) stays
    /// there: the handler gets the file (`bodyAsFile`), and intake streams it (`DeliveryBody`).
    public func register(on router: inout Router, maxBodyBytes: Int) {
        let gate = WebhookGate(provider: "stability", verifier: verifier, logger: logger)
        router.add("POST", "/v1/webhooks/stability", maxBodyBytes: maxBodyBytes, gate: gate.gate, bodyAsFile: true,
                   AfterimageMetrics.instrumentWebhook(provider: "stability") { request in self.handle(request) })
    }

    func handle(_ request: Request) -> Response {
        let envelope = WebhookEnvelope(provider: "stability", logger: logger)
        let delivery: ReplicateIntake.Delivery
        switch envelope.delivery(from: request) {
        case .success(let verified): delivery = verified
        case .failure(let refusal): return refusal.response
        }
        do {
            let outcome = try intake.record(delivery, body: DeliveryBody(request), pool: pool)
            if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: StabilityIntake.provider, id: id)) }
            return envelope.response(for: outcome, delivery: delivery, kind: "a Stability result", bodyBytes: request.bodyCount)
        } catch let error as SystemCallError {
            // The spilled body could not be read back (an I/O error): nothing was recorded.
            logger.error("webhook not recorded: the spilled body could not be read", metadata: ["provider": "stability", "error": "\(error)"])
            return .error(status: 503, code: "body_storage_unavailable", message: "the delivery was not recorded; retry later",
                          headers: [("Retry-After", "30")])
        } catch let error as ArchiveError {
            // The spool could not take the bytes (disk full, permissions): nothing was acknowledged.
            logger.error("webhook not recorded: spool failure", metadata: ["provider": "stability", "error": "\(error)"])
            return .error(status: 503, code: "spool_unavailable", message: "the delivery was not recorded; retry later",
                          headers: [("Retry-After", "30")])
        } catch {
            return envelope.databaseFailure(error)
        }
    }
}
