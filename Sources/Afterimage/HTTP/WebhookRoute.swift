import Foundation
import Logging
import MicroHTTP
import PQ
import Primitives

/// `POST {routePath}` of any webhook provider: the signature first (401 writes nothing; a request without
/// signature headers is refused before its body is read), then one transaction, then 2xx. What differs
/// between providers comes from the provider (`WebhookProvider`); this is the same for all of them.
///
/// Deferred, not blocking: a group-committed delivery joins the next commit and the answer goes out when
/// the batcher calls back, so no thread waits per webhook (what lets 64 connections share two cores with
/// PostgreSQL, bench/intake). Work that blocks goes to the handler pool first: decoding inline outputs
/// into the spool, fetching a provider's signing keys again, and recording a provider whose deliveries are
/// committed alone. A body large enough to have been spilled to disk reaches the handler on a pool thread.
public struct WebhookRoute: Sendable {
    let provider: any WebhookProvider
    let batcher: IntakeBatcher
    let pool: Pool
    /// Where inline outputs are decoded before recording; nil: the workers decode them from the delivery.
    let spool: Spool?
    /// Told about every recorded prediction, so a lookup never serves an answer older than this write.
    let lookupCache: LookupCache?
    let logger: Logger

    public init(
        provider: any WebhookProvider, batcher: IntakeBatcher, pool: Pool, spool: Spool?, lookupCache: LookupCache? = nil,
        logger: Logger
    ) {
        self.provider = provider
        self.batcher = batcher
        self.pool = pool
        self.spool = spool
        self.lookupCache = lookupCache
        self.logger = logger
    }

    var recorder: DeliveryRecorder { batcher.recorder }
    var envelope: WebhookEnvelope { WebhookEnvelope(provider: provider.name, logger: logger) }

    public func register(on router: inout Router) {
        let authentication = provider.authentication
        let gate = WebhookGate(provider: provider.name, authentication: authentication, logger: logger)
        router.add(
            "POST", provider.routePath, maxBodyBytes: provider.maxBodyBytes, gate: gate.gate,
            bodyAsFile: provider.takesBodiesAsFiles,
            deferred: { request in self.handle(request, authentication: authentication) })
    }

    func handle(_ request: Request, authentication: WebhookAuthentication) -> DeferredAnswer {
        let started = ContinuousClock.now
        switch envelope.delivery(from: request, authentication: authentication) {
        case .success(let received):
            if received.undecided == nil, received.delivery.bodyFile == nil, provider.commitStyle == .groupCommit,
                !(spool != nil && provider.mayCarryInlineOutputs(received.delivery.body))
            {
                return .later { responder in self.submit(received.delivery, started: started, answer: responder) }
            }
            return .laterOnPool { responder in self.onPool(received, started: started, answer: responder) }
        case .failure(let refusal):
            AfterimageMetrics.webhookAnswered(provider: provider.name, status: refusal.response.status, since: started)
            return .now(refusal.response)
        }
    }

    /// On a handler pool thread: settle an undecided signature, decode inline outputs, then record.
    private func onPool(_ received: WebhookEnvelope.Received, started: ContinuousClock.Instant, answer responder: Responder) {
        if let (verdict, keys) = received.undecided {
            let signed = verdict.signed
            switch keys.refreshAndVerify(signed.signature, message: signed.message(bodySHA256Hex: verdict.bodySHA256), keyID: signed.keyID) {
            case .verified:
                break
            case .refuse:
                logger.notice("webhook refused", metadata: ["provider": "\(provider.name)", "reason": "signature_invalid"])
                return answer(
                    .error(
                        status: 401, code: StandardWebhooksVerifier.Failure.Code.invalid.rawValue,
                        message: "the signature does not verify with the provider's keys"), started: started, responder)
            case .unavailable(let retryAfter):
                logger.warning("webhook not checked: the provider's signing keys are unavailable", metadata: ["provider": "\(provider.name)"])
                return answer(WebhookGate.keysUnavailableResponse(retryAfter: retryAfter), started: started, responder)
            }
        }
        switch provider.commitStyle {
        case .groupCommit where received.delivery.bodyFile == nil:
            var delivery = received.delivery
            if let spool, provider.mayCarryInlineOutputs(delivery.body) {
                do {
                    delivery = try provider.spoolingInlineOutputs(of: delivery, into: spool)
                } catch let unreadable as UnreadableDelivery {
                    return answer(recordRejected(delivery, reason: unreadable.message), started: started, responder)
                } catch {
                    return answer(envelope.spoolFailure(error), started: started, responder)
                }
            }
            submit(delivery, started: started, answer: responder)
        case .groupCommit, .alone:
            answer(recordAlone(received.delivery), started: started, responder)
        }
    }

    /// Hands the delivery to the next group commit; `responder` is answered after COMMIT (or with 503).
    private func submit(_ delivery: WebhookDelivery, started: ContinuousClock.Instant, answer responder: Responder) {
        let envelope = self.envelope
        let kind = provider.bodyDescription
        batcher.submit(delivery) { [lookupCache, recorder, provider] result in
            let response: Response
            switch result {
            case .success(let outcome):
                if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: provider.name.rawValue, id: id)) }
                response = envelope.response(for: outcome, delivery: delivery, kind: kind)
            case .failure(let error):
                // Not acknowledged: the decoded files go (if the commit did happen after all, the workers decode
                // the outputs from the recorded delivery instead).
                recorder.removeSpoolFiles(of: delivery)
                response = envelope.databaseFailure(error)
            }
            AfterimageMetrics.webhookAnswered(provider: provider.name, status: response.status, since: started)
            responder.respond(response)
        }
    }

    /// A delivery recorded in a transaction of its own: a retry is answered without decoding its body again,
    /// inline content is decoded into the spool and fsynced, then delivery, prediction and assets commit
    /// together. Connections are taken from the pool only around the database work, never while a large
    /// body is decoded. A body handed over as a file is read from it in pieces throughout: the provider
    /// sees its JSON skeleton, and the raw body goes to the database with COPY (`DeliveryRecord`).
    private func recordAlone(_ received: WebhookDelivery) -> Response {
        var delivery = received
        do {
            if let known = try pool.withConnection({ try recorder.knownDelivery(delivery.deliveryID, provider: provider.name, on: $0) }) {
                return envelope.response(for: .duplicate(predictionID: known), delivery: delivery, kind: provider.bodyDescription)
            }
            if let spool, provider.mayCarryInlineOutputs(delivery.body) || delivery.bodyFile != nil {
                do {
                    delivery = try provider.spoolingInlineOutputs(of: delivery, into: spool)
                } catch let unreadable as UnreadableDelivery {
                    return recordRejected(delivery, reason: unreadable.message)
                }
            }
            if delivery.bodyFile != nil, delivery.body.isEmpty {
                // The provider did not parse the file (no spool, nothing inline): its skeleton is what it interprets.
                do {
                    delivery.body = try JSONSkeleton(reading: delivery.rawBody).bytes
                } catch let error as JSONSkeleton.Failure {
                    return recordRejected(delivery, reason: error.isSyntax ? "not valid JSON: \(error)" : "\(error)")
                }
            }
            let outcome = try pool.withConnection { try recorder.record(delivery, on: $0) }
            if case .accepted(let id, _) = outcome { lookupCache?.invalidate(.init(provider: provider.name.rawValue, id: id)) }
            return envelope.response(for: outcome, delivery: delivery, kind: provider.bodyDescription)
        } catch let error as ArchiveError {
            return envelope.spoolFailure(error)
        } catch let error as SystemCallError {
            // The spilled body could not be read back (an I/O error): nothing was recorded.
            recorder.removeSpoolFiles(of: delivery)
            logger.error("webhook not recorded: the spilled body could not be read", metadata: ["provider": "\(provider.name)", "error": "\(error)"])
            return .error(
                status: 503, code: "body_storage_unavailable", message: "the delivery was not recorded; retry later",
                headers: [("Retry-After", "30")])
        } catch  where error.isDuplicateDelivery {
            // A concurrent copy of this delivery committed first (COPY has no ON CONFLICT): this one is its duplicate.
            recorder.removeSpoolFiles(of: delivery)
            let known = try? pool.withConnection { try recorder.knownDelivery(delivery.deliveryID, provider: provider.name, on: $0) }
            return envelope.response(for: .duplicate(predictionID: known ?? nil), delivery: delivery, kind: provider.bodyDescription)
        } catch {
            // Nothing was acknowledged: the files have no row and the sender will retry.
            recorder.removeSpoolFiles(of: delivery)
            return envelope.databaseFailure(error)
        }
    }

    /// A signed body whose content cannot be decoded at all: kept raw, answered 400.
    private func recordRejected(_ delivery: WebhookDelivery, reason: String) -> Response {
        do {
            let outcome = try pool.withConnection { try recorder.recordRejected(delivery, reason: reason, on: $0) }
            return envelope.response(for: outcome, delivery: delivery, kind: provider.bodyDescription)
        } catch {
            return envelope.databaseFailure(error)
        }
    }

    private func answer(_ response: Response, started: ContinuousClock.Instant, _ responder: Responder) {
        AfterimageMetrics.webhookAnswered(provider: provider.name, status: response.status, since: started)
        responder.respond(response)
    }
}
