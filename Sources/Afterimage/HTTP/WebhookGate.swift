import Foundation
import Logging
import MicroHTTP

/// The signature check of a webhook route, split at the two points where the server can act: the
/// headers before any body byte is read, the body as it arrives.
///
/// Why: a webhook route is open to anyone, and its bodies may be tens of MiB. Missing signature headers
/// or a stale timestamp are refused 401 from the head alone, so an unauthenticated sender costs no body
/// memory; a forged signature is refused once its body has streamed through the HMAC, so the body is
/// never handed over (and, spilled to disk while it arrived, never held in memory). Nothing is written
/// for a refused request. The route's handler runs only for a verified body.
///
/// Any route that receives Standard Webhooks signatures registers one, with its own header names if the
/// provider uses other ones (`StandardWebhooksVerifier.HeaderNames`).
struct WebhookGate: Sendable {
    let provider: String
    let headerNames: StandardWebhooksVerifier.HeaderNames
    /// Read per request so a reload (SIGHUP) can swap secrets without a restart.
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let logger: Logger

    /// Longest webhook id kept (the `deliveries` column is text; a sender's id is short).
    static let maxWebhookIDBytes = 256

    init(provider: String, headerNames: StandardWebhooksVerifier.HeaderNames = .standard,
         verifier: @escaping @Sendable () -> StandardWebhooksVerifier, logger: Logger) {
        self.provider = provider
        self.headerNames = headerNames
        self.verifier = verifier
        self.logger = logger
    }

    var gate: RequestGate { { head in self.admit(head) } }

    func admit(_ head: RequestHead) -> Admission {
        let started = ContinuousClock.now
        let id = head.header(headerNames.id)
        let verification: StandardWebhooksVerifier.Verification
        do {
            verification = try verifier().begin(id: id, timestamp: head.header(headerNames.timestamp),
                                                signature: head.header(headerNames.signature))
        } catch {
            return .refuse(refusal(error, since: started))
        }
        guard let id, id.utf8.count <= Self.maxWebhookIDBytes else {
            let response = Response.error(status: 400, code: "webhook_id_invalid", message: "webhook-id must be at most \(Self.maxWebhookIDBytes) bytes")
            AfterimageMetrics.webhookAnswered(provider: provider, status: response.status, since: started)
            return .refuse(response)
        }
        return .admit(SignatureCheck(verification, gate: self, started: started))
    }

    /// 401 for a failed check; logged (without any header value) and counted like any webhook answer.
    func refusal(_ failure: StandardWebhooksVerifier.Failure, since started: ContinuousClock.Instant) -> Response {
        logger.notice("webhook refused", metadata: ["provider": "\(provider)", "reason": "\(failure.code.rawValue)"])
        AfterimageMetrics.webhookAnswered(provider: provider, status: 401, since: started)
        return .error(status: 401, code: failure.code.rawValue, message: failure.message)
    }
}

/// Feeds the body to the HMAC as it arrives; lives on the event thread of its connection.
final class SignatureCheck: BodyCheck {
    private var verification: StandardWebhooksVerifier.Verification
    private let gate: WebhookGate
    private let started: ContinuousClock.Instant

    init(_ verification: StandardWebhooksVerifier.Verification, gate: WebhookGate, started: ContinuousClock.Instant) {
        self.verification = verification
        self.gate = gate
        self.started = started
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        verification.update(bytes)
    }

    func finish() -> Response? {
        do {
            try verification.finish()
            return nil
        } catch {
            return gate.refusal(error, since: started)
        }
    }
}
