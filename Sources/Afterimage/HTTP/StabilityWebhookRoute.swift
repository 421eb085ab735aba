import Foundation
import Logging
import MicroHTTP
import PQ

/// `POST /v1/webhooks/stability`: what apps forward from Stability AI, signed with the Stability secret
/// (Standard Webhooks). Signature first (401 writes nothing); inline bytes are on disk and the delivery
/// committed before the 2xx.
public struct StabilityWebhookRoute: Sendable {
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let intake: StabilityIntake
    let pool: Pool
    let logger: Logger

    /// `verifier` is read per request so a reload can swap secrets without a restart.
    public init(verifier: @escaping @Sendable () -> StandardWebhooksVerifier, intake: StabilityIntake, pool: Pool, logger: Logger) {
        self.verifier = verifier
        self.intake = intake
        self.pool = pool
        self.logger = logger
    }

    /// `maxBodyBytes` is `http.stability_max_body_bytes`: inline videos are large.
    public func register(on router: inout Router, maxBodyBytes: Int) {
        router.add("POST", "/v1/webhooks/stability", maxBodyBytes: maxBodyBytes) { request in self.handle(request) }
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
            logger.notice("webhook refused", metadata: ["provider": "stability", "reason": "\(error.code.rawValue)"])
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
            outcome = try intake.record(delivery, pool: pool)
        } catch let error as ArchiveError {
            // The spool could not take the bytes (disk full, permissions): nothing was acknowledged.
            logger.error("webhook not recorded: spool failure", metadata: ["provider": "stability", "error": "\(error)"])
            return .error(status: 503, code: "spool_unavailable", message: "the delivery was not recorded; retry later",
                          headers: [("Retry-After", "30")])
        } catch {
            return databaseFailure(error, logger: logger, provider: "stability")
        }
        switch outcome {
        case .accepted(let predictionID, let assets):
            logger.info("webhook accepted", metadata: ["provider": "stability", "prediction": "\(predictionID)", "assets": "\(assets)",
                                                      "bytes": "\(request.body.count)"])
            return .json(Accepted(status: "accepted", prediction_id: predictionID, assets: assets))
        case .duplicate(let predictionID):
            return .json(Accepted(status: "duplicate", prediction_id: predictionID.flatMap { $0.isEmpty ? nil : $0 }, assets: nil))
        case .unparseable(let message):
            logger.warning("webhook kept but not understood", metadata: ["provider": "stability", "webhook_id": "\(webhookID)", "reason": "\(message)"])
            return .error(status: 400, code: "body_unparseable", message: "kept, but not a Stability result: \(message)")
        }
    }
}
