import Foundation
import Logging
import MicroHTTP

/// What every webhook route does around its provider-specific intake: turn a request its `WebhookGate`
/// verified into a `Delivery`, and turn the intake's outcome into the HTTP answer. One place, so the
/// providers cannot drift apart.
struct WebhookEnvelope {
    let provider: ProviderName
    let logger: Logger

    /// A delivery taken from a request, and, for an Ed25519 signature no cached key verified, what is
    /// needed to settle it once the keys are fetched again (on a handler pool thread, before recording).
    struct Received {
        var delivery: WebhookDelivery
        var undecided: (verdict: SignedDigestVerdict.Verified, keys: WebhookKeySet)?
    }

    /// The delivery of a request its `WebhookGate` has let through (the handler never sees any other), or
    /// a refusal should what the gate checked somehow be absent.
    func delivery(from request: Request, authentication: WebhookAuthentication) -> Result<Received, WebhookRefusal> {
        switch authentication {
        case .standardWebhooks(let names, _):
            guard let webhookID = request.header(names.id), !webhookID.isEmpty,
                webhookID.utf8.count <= WebhookGate.maxWebhookIDBytes
            else {
                return .failure(
                    WebhookRefusal(
                        .error(
                            status: 401, code: StandardWebhooksVerifier.Failure.Code.missingHeaders.rawValue,
                            message: "\(names.id), \(names.timestamp) and \(names.signature) headers are required")))
            }
            let timestamp = request.header(names.timestamp).flatMap(Int64.init).map { Date(timeIntervalSince1970: TimeInterval($0)) }
            return .success(
                Received(
                    delivery: WebhookDelivery(
                        provider: provider, deliveryID: webhookID, timestamp: timestamp,
                        body: request.body, bodyFile: request.bodyFile), undecided: nil))
        case .signedDigest(_, let keys):
            let verified: SignedDigestVerdict.Verified
            var undecided: (verdict: SignedDigestVerdict.Verified, keys: WebhookKeySet)?
            switch request.bodyCheckResult as? SignedDigestVerdict {
            case .verified(let result)?:
                verified = result
            case .undecided(let result)?:
                verified = result
                undecided = (result, keys)
            case nil:
                return .failure(
                    WebhookRefusal(
                        .error(
                            status: 401, code: StandardWebhooksVerifier.Failure.Code.invalid.rawValue,
                            message: "the signature was not checked")))
            }
            // Retries are signed afresh (a new timestamp), so the body identifies the delivery with the id.
            let delivery = WebhookDelivery(
                provider: provider, deliveryID: "\(verified.signed.id):\(verified.bodySHA256)",
                subject: verified.signed.id,
                timestamp: Date(timeIntervalSince1970: TimeInterval(verified.signed.seconds)), body: request.body,
                bodyFile: request.bodyFile)
            return .success(Received(delivery: delivery, undecided: undecided))
        }
    }

    /// `{"assets":…,"prediction_id":…,"status":…}`, absent fields left out. Written by hand: every
    /// acknowledged webhook sends one, and JSONEncoder was a fifth of the connection threads' work.
    static func acknowledgement(status: String, predictionID: String?, assets: Int?) -> Response {
        var json = JSONWriter(capacity: 96 + (predictionID?.utf8.count ?? 0))
        json.objectStart()
        if let assets { json.field("assets", assets) }
        if let predictionID { json.field("prediction_id", predictionID) }
        json.field("status", status)
        json.objectEnd()
        return .json(raw: json.bytes)
    }

    /// `kind` names what the body should have been ("a prediction", "a Stability result") in a 400.
    func response(for outcome: IntakeOutcome, delivery: WebhookDelivery, kind: String) -> Response {
        switch outcome {
        case .accepted(let predictionID, let assets):
            logger.info(
                "webhook accepted",
                metadata: [
                    "provider": "\(provider)", "prediction": "\(predictionID)", "assets": "\(assets)",
                    "bytes": "\(delivery.rawBody.count)",
                ])
            return Self.acknowledgement(status: "accepted", predictionID: predictionID, assets: assets)
        case .duplicate(let predictionID):
            AfterimageMetrics.webhookDuplicate(provider: provider)
            return Self.acknowledgement(status: "duplicate", predictionID: predictionID.flatMap { $0.isEmpty ? nil : $0 }, assets: nil)
        case .unparseable(let message):
            logger.warning(
                "webhook kept but not understood",
                metadata: ["provider": "\(provider)", "webhook_id": "\(delivery.deliveryID)", "reason": "\(message)"])
            return .error(status: 400, code: "body_unparseable", message: "kept, but not \(kind): \(message)")
        }
    }

    /// A database that is down or saturated is the provider's cue to retry later, not a lost delivery:
    /// 503 with Retry-After, because nothing was committed.
    func databaseFailure(_ error: any Error) -> Response {
        logger.error("webhook not recorded: database unavailable", metadata: ["provider": "\(provider)", "error": "\(error)"])
        return .error(
            status: 503, code: "database_unavailable",
            message: "the delivery was not recorded; retry later", headers: [("Retry-After", "5")])
    }

    /// The spool could not take the delivery's inline bytes (disk full, permissions): nothing was
    /// acknowledged, the provider retries.
    func spoolFailure(_ error: any Error) -> Response {
        logger.error("webhook not recorded: spool failure", metadata: ["provider": "\(provider)", "error": "\(error)"])
        return .error(
            status: 503, code: "spool_unavailable", message: "the delivery was not recorded; retry later",
            headers: [("Retry-After", "30")])
    }
}

struct WebhookRefusal: Error {
    let response: Response
    init(_ response: Response) { self.response = response }
}
