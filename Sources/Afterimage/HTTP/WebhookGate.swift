import Crypto
import Foundation
import Logging
import MicroHTTP
import Primitives

/// The signature check of a webhook route, split at the two points where the server can act: the
/// headers before any body byte is read, the body as it arrives.
///
/// Why: a webhook route is open to anyone, and its bodies may be tens of MiB. Missing signature headers
/// or a stale timestamp are refused 401 from the head alone, so an unauthenticated sender costs no body
/// memory; a forged signature is refused once its body has streamed through the check, so the body is
/// never handed over (and, spilled to disk while it arrived, never held in memory). Nothing is written
/// for a refused request. The route's handler runs only for a verified body — or, for an Ed25519 body no
/// cached key verified but a fetched one might, with a `SignedDigestVerdict.undecided` that the handler
/// settles on a handler pool thread before anything is recorded.
///
/// Every webhook route registers one, with its provider's `WebhookAuthentication` (scheme and header names).
struct WebhookGate: Sendable {
    let provider: ProviderName
    let authentication: WebhookAuthentication
    let logger: Logger

    /// Longest webhook id kept (the `deliveries` column is text; a sender's id is short).
    static let maxWebhookIDBytes = 256

    init(provider: ProviderName, authentication: WebhookAuthentication, logger: Logger) {
        self.provider = provider
        self.authentication = authentication
        self.logger = logger
    }

    /// A Standard Webhooks gate (`headerNames` for providers that send the scheme under other names).
    init(
        provider: ProviderName, headerNames: StandardWebhooksVerifier.HeaderNames = .standard,
        verifier: @escaping @Sendable () -> StandardWebhooksVerifier, logger: Logger
    ) {
        self.init(provider: provider, authentication: .standardWebhooks(headerNames, verifier: verifier), logger: logger)
    }

    var gate: RequestGate { { head in self.admit(head) } }

    func admit(_ head: RequestHead) -> Admission {
        let started = ContinuousClock.now
        switch authentication {
        case .standardWebhooks(let names, let verifier):
            let id = head.header(names.id)
            let verification: StandardWebhooksVerifier.Verification
            do {
                verification = try verifier().begin(
                    id: id, timestamp: head.header(names.timestamp),
                    signature: head.header(names.signature))
            } catch {
                return .refuse(refusal(error, since: started))
            }
            guard let id, id.utf8.count <= Self.maxWebhookIDBytes else {
                let response = Response.error(
                    status: 400, code: "webhook_id_invalid",
                    message: "\(names.id) must be at most \(Self.maxWebhookIDBytes) bytes")
                AfterimageMetrics.webhookAnswered(provider: provider, status: response.status, since: started)
                return .refuse(response)
            }
            return .admit(SignatureCheck(verification, gate: self, started: started))
        case .signedDigest(let scheme, let keys):
            let signed: SignedDigestScheme.Signed
            do {
                signed = try scheme.begin(header: head.header)
            } catch {
                return .refuse(refusal(error, since: started))
            }
            if let retryAfter = keys.unavailableBeforeBody() {
                return .refuse(keysUnavailable(retryAfter: retryAfter, since: started))
            }
            return .admit(DigestSignatureCheck(signed, keys: keys, gate: self, started: started))
        }
    }

    /// 401 for a failed check; logged (without any header value) and counted like any webhook answer.
    func refusal(_ failure: StandardWebhooksVerifier.Failure, since started: ContinuousClock.Instant) -> Response {
        logger.notice("webhook refused", metadata: ["provider": "\(provider)", "reason": "\(failure.code.rawValue)"])
        AfterimageMetrics.webhookAnswered(provider: provider, status: 401, since: started)
        return .error(status: 401, code: failure.code.rawValue, message: failure.message)
    }

    /// 503 + Retry-After: the provider's keys cannot be had now, and a genuine delivery must be retried,
    /// not refused.
    func keysUnavailable(retryAfter: Int, since started: ContinuousClock.Instant) -> Response {
        logger.warning("webhook not checked: the provider's signing keys are unavailable", metadata: ["provider": "\(provider)"])
        AfterimageMetrics.webhookAnswered(provider: provider, status: 503, since: started)
        return Self.keysUnavailableResponse(retryAfter: retryAfter)
    }

    static func keysUnavailableResponse(retryAfter: Int) -> Response {
        .error(
            status: 503, code: "signing_keys_unavailable",
            message: "the provider's signing keys cannot be fetched now; retry later", headers: [("Retry-After", String(retryAfter))])
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

/// Hashes the body with SHA-256 as it arrives, then checks the Ed25519 signature over the signed digest
/// with the cached keys; lives on the event thread of its connection, so it never fetches keys: a
/// signature the cached keys do not verify, when a fetch may help, goes to the handler undecided.
final class DigestSignatureCheck: BodyCheck {
    private var hasher = SHA256()
    private let signed: SignedDigestScheme.Signed
    private let keys: WebhookKeySet
    private let gate: WebhookGate
    private let started: ContinuousClock.Instant
    private(set) var result: (any Sendable)?

    init(_ signed: SignedDigestScheme.Signed, keys: WebhookKeySet, gate: WebhookGate, started: ContinuousClock.Instant) {
        self.signed = signed
        self.keys = keys
        self.gate = gate
        self.started = started
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
    }

    func finish() -> Response? {
        let digest = Hex.encode(hasher.finalize())
        let verified = SignedDigestVerdict.Verified(signed: signed, bodySHA256: digest)
        if keys.verify(signed.signature, message: signed.message(bodySHA256Hex: digest), keyID: signed.keyID) {
            result = SignedDigestVerdict.verified(verified)
            return nil
        }
        switch keys.next(afterFailureWith: signed.keyID) {
        case .refresh:
            result = SignedDigestVerdict.undecided(verified)
            return nil
        case .unavailable(let retryAfter):
            return gate.keysUnavailable(retryAfter: retryAfter, since: started)
        case .refuse:
            return gate.refusal(.init(code: .invalid, message: "the signature does not verify with the provider's keys"), since: started)
        }
    }
}
