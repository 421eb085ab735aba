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

    struct Accepted: Encodable {
        let status: String
        let prediction_id: String?
        let assets: Int?
    }

    func handle(_ request: Request) -> Response {
        let webhookID = request.header("webhook-id")
        let timestamp = request.header("webhook-timestamp")
        do {
            try verifier().verify(id: webhookID, timestamp: timestamp, signature: request.header("webhook-signature"), body: request.body)
        } catch {
            logger.notice("webhook refused", metadata: ["provider": "replicate", "reason": "\(error.code.rawValue)"])
            return .error(status: 401, code: error.code.rawValue, message: error.message)
        }
        guard let webhookID, webhookID.utf8.count <= 256 else {
            return .error(status: 400, code: "webhook_id_invalid", message: "webhook-id must be at most 256 bytes")
        }
        let delivery = ReplicateIntake.Delivery(
            webhookID: webhookID, timestamp: timestamp.flatMap(Int64.init).map { Date(timeIntervalSince1970: TimeInterval($0)) },
            body: request.body)
        let outcome: IntakeOutcome
        do {
            outcome = try batcher.record(delivery)
        } catch {
            return databaseFailure(error, logger: logger, provider: "replicate")
        }
        switch outcome {
        case .accepted(let predictionID, let assets):
            logger.info("webhook accepted", metadata: ["provider": "replicate", "prediction": "\(predictionID)", "assets": "\(assets)"])
            return .json(Accepted(status: "accepted", prediction_id: predictionID, assets: assets))
        case .duplicate(let predictionID):
            AfterimageMetrics.webhookDuplicate(provider: "replicate")
            return .json(Accepted(status: "duplicate", prediction_id: predictionID, assets: nil))
        case .unparseable(let message):
            logger.warning("webhook kept but not understood", metadata: ["provider": "replicate", "webhook_id": "\(webhookID)", "reason": "\(message)"])
            return .error(status: 400, code: "body_unparseable", message: "kept, but not a prediction: \(message)")
        }
    }
}

/// A database that is down or saturated is the provider's cue to retry later, not a lost delivery:
/// 503 with Retry-After, because nothing was committed.
func databaseFailure(_ error: any Error, logger: Logger, provider: String) -> Response {
    logger.error("webhook not recorded: database unavailable", metadata: ["provider": "\(provider)", "error": "\(error)"])
    return .error(status: 503, code: "database_unavailable",
                  message: "the delivery was not recorded; retry later", headers: [("Retry-After", "5")])
}
