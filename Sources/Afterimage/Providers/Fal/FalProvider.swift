import Foundation

/// fal.ai's queue (`queue.fal.run/…?fal_webhook=…`): a signed POST when a request finishes, the same
/// Ed25519 scheme as Ideogram's under fal's headers (no key id), with the keys fal publishes
/// (`fal.jwks_url`) or pins (`fal.public_keys`). `OK` archives every http(s) URL in the payload; `ERROR` is
/// recorded as a failed prediction and nothing is fetched. fal's files do not expire by default, so its
/// assets have no deadline (claimed after every asset that has one) unless `fal.retention` gives them one.
/// Deliveries are deduplicated on the request id plus the body's SHA-256 (fal retries up to 10 times over
/// two hours, each signed afresh).
public struct FalProvider: WebhookProvider {
    public static let name = ProviderName.fal
    public let routePath = "/v1/webhooks/fal"
    public let maxBodyBytes: Int
    public let commitStyle = CommitStyle.groupCommit
    public let keys: WebhookKeySet
    /// Nil: fal's files do not expire.
    let retention: TimeInterval?

    public static let headers = SignedDigestScheme.HeaderNames(
        id: "X-Fal-Webhook-Request-Id", user: "X-Fal-Webhook-User-Id", timestamp: "X-Fal-Webhook-Timestamp",
        signature: "X-Fal-Webhook-Signature")

    public init(keys: WebhookKeySet, retentionSeconds: Int = 0, maxBodyBytes: Int = 16 << 20) {
        self.keys = keys
        retention = retentionSeconds > 0 ? TimeInterval(retentionSeconds) : nil
        self.maxBodyBytes = maxBodyBytes
    }

    public static func make(_ context: ProviderContext) -> FalProvider {
        let settings = context.settings.fal
        let keys = WebhookKeySet.configured(for: name, jwksURL: settings.jwksURL, publicKeys: settings.publicKeys, context: context)
        return FalProvider(keys: keys, retentionSeconds: settings.retention, maxBodyBytes: context.settings.http.maxBodyBytes)
    }

    public var authentication: WebhookAuthentication { .signedDigest(SignedDigestScheme(headers: Self.headers), keys: keys) }
    public var bodyDescription: String { "a fal result" }

    public func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation {
        let (body, output) = try delivery.body.withUnsafeBufferPointer { buffer in
            Result { () throws(UnreadableDelivery) in
                let body = try FalBody.parse(buffer)
                return (body, body.payload.map { JSONText.kept($0, of: buffer, elidingData: body.outputs) })
            }
        }.get()
        let id = body.requestID ?? delivery.subject ?? ""
        guard PredictionID.isSafe(id) else { throw UnreadableDelivery(PredictionID.rule) }
        let status: PredictionStatus
        switch body.status {
        case "OK": status = .succeeded
        case "ERROR": status = .failed
        default: throw UnreadableDelivery("status must be \"OK\" or \"ERROR\"")
        }
        let completed = delivery.timestamp ?? delivery.receivedAt
        let deadline = retention.map { completed.addingTimeInterval($0) }
        // Only downloads: a data: URI in a payload (fal's sync mode) is kept in the raw delivery.
        let assets =
            status == .succeeded
            ? body.outputs.filter { !$0.isData }.map { AssetSpec(pointer: $0.pointer, source: .url($0.url), deadline: deadline) }
            : []
        let prediction = PredictionRecord(
            id: id, status: status, outputJSON: output, error: body.error ?? body.payloadError,
            completedAt: completed)
        return Interpretation(prediction: prediction, assets: assets)
    }
}
