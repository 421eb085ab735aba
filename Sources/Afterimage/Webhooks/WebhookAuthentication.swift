import Foundation

/// How a provider's deliveries prove where they come from. Each case is checked in two steps by the route's
/// `WebhookGate`: the headers before any body byte is read (missing or stale: 401 at once), the body as
/// it arrives.
public enum WebhookAuthentication: Sendable {
    /// Standard Webhooks: HMAC-SHA256 over `{id}.{timestamp}.{body}` with a shared `whsec_` secret
    /// (Replicate; what apps forwarding Stability results sign with). The verifier is read per request so a
    /// reload can swap secrets.
    case standardWebhooks(StandardWebhooksVerifier.HeaderNames, verifier: @Sendable () -> StandardWebhooksVerifier)
    /// Ed25519 over `{id}\n{user}\n{timestamp}\n{hex SHA-256 of the body}` with the provider's published
    /// keys (Ideogram, fal).
    case signedDigest(SignedDigestScheme, keys: WebhookKeySet)
}
