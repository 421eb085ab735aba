import Foundation
import Logging
import MicroHTTP

/// What every webhook route does around its provider-specific intake: turn a request its `WebhookGate`
/// verified into a `Delivery`, and turn the intake's outcome into the HTTP answer. One place, so the
/// providers cannot drift apart.
struct WebhookEnvelope {
    let provider: String
    let logger: Logger
    var headerNames: StandardWebhooksVerifier.HeaderNames = .standard

    /// The delivery of a request whose signature the route's `WebhookGate` has verified (the handler never
    /// sees any other), or a refusal should the headers somehow be absent.
    func delivery(from request: Request) -> Result<ReplicateIntake.Delivery, WebhookRefusal> {
        guard let webhookID = request.header(headerNames.id), !webhookID.isEmpty,
              webhookID.utf8.count <= WebhookGate.maxWebhookIDBytes else {
            return .failure(WebhookRefusal(.error(status: 401, code: StandardWebhooksVerifier.Failure.Code.missingHeaders.rawValue,
                                                  message: "webhook-id, webhook-timestamp and webhook-signature headers are required")))
        }
        let timestamp = request.header(headerNames.timestamp)
        return .success(ReplicateIntake.Delivery(
            webhookID: webhookID, timestamp: timestamp.flatMap(Int64.init).map { Date(timeIntervalSince1970: TimeInterval($0)) },
            body: request.body))
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
    /// `bodyBytes`: the body's length when it is not in `delivery.body` (a route that takes bodies as files).
    func response(for outcome: IntakeOutcome, delivery: ReplicateIntake.Delivery, kind: String, bodyBytes: Int? = nil) -> Response {
        switch outcome {
        case .accepted(let predictionID, let assets):
            logger.info("webhook accepted", metadata: ["provider": "\(provider)", "prediction": "\(predictionID)", "assets": "\(assets)",
                                                      "bytes": "\(bodyBytes ?? delivery.body.count)"])
            return Self.acknowledgement(status: "accepted", predictionID: predictionID, assets: assets)
        case .duplicate(let predictionID):
            AfterimageMetrics.webhookDuplicate(provider: provider)
            return Self.acknowledgement(status: "duplicate", predictionID: predictionID.flatMap { $0.isEmpty ? nil : $0 }, assets: nil)
        case .unparseable(let message):
            logger.warning("webhook kept but not understood", metadata: ["provider": "\(provider)", "webhook_id": "\(delivery.webhookID)", "reason": "\(message)"])
            return .error(status: 400, code: "body_unparseable", message: "kept, but not \(kind): \(message)")
        }
    }

    /// A database that is down or saturated is the provider's cue to retry later, not a lost delivery:
    /// 503 with Retry-After, because nothing was committed.
    func databaseFailure(_ error: any Error) -> Response {
        logger.error("webhook not recorded: database unavailable", metadata: ["provider": "\(provider)", "error": "\(error)"])
        return .error(status: 503, code: "database_unavailable",
                      message: "the delivery was not recorded; retry later", headers: [("Retry-After", "5")])
    }
}

struct WebhookRefusal: Error {
    let response: Response
    init(_ response: Response) { self.response = response }
}
