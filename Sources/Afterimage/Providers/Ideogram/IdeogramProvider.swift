import Foundation

/// Ideogram's asynchronous generations (`/v1/ideogram-v4/async/generate?webhook_url=…`): a signed POST once
/// every image is done, Ed25519 over the generation id, the user id, the timestamp and the body's SHA-256,
/// with the keys Ideogram publishes (`ideogram.jwks_url`) or pins (`ideogram.public_keys`). Its result
/// links expire 24 hours after the generation was created, so every `data[*].url` is archived before
/// `created + ideogram.retention`. Deliveries are deduplicated on the generation id plus the body's SHA-256
/// (a retry is signed afresh, with a new timestamp, over the same body).
public struct IdeogramProvider: WebhookProvider {
    public static let name = ProviderName.ideogram
    public let routePath = "/v1/webhooks/ideogram"
    public let maxBodyBytes: Int
    public let commitStyle = CommitStyle.groupCommit
    public let keys: WebhookKeySet
    let retention: TimeInterval

    public static let headers = SignedDigestScheme.HeaderNames(
        id: "X-Ideogram-Webhook-Generation-Id", user: "X-Ideogram-Webhook-User-Id", timestamp: "X-Ideogram-Webhook-Timestamp",
        signature: "X-Ideogram-Webhook-Signature", keyID: "X-Ideogram-Webhook-Key-Id")

    public init(keys: WebhookKeySet, retentionSeconds: Int = 86400, maxBodyBytes: Int = 16 << 20) {
        self.keys = keys
        retention = TimeInterval(retentionSeconds)
        self.maxBodyBytes = maxBodyBytes
    }

    public static func make(_ context: ProviderContext) -> IdeogramProvider {
        let settings = context.settings.ideogram
        let keys = WebhookKeySet.configured(for: name, jwksURL: settings.jwksURL, publicKeys: settings.publicKeys, context: context)
        return IdeogramProvider(keys: keys, retentionSeconds: settings.retention, maxBodyBytes: context.settings.http.maxBodyBytes)
    }

    public var authentication: WebhookAuthentication { .signedDigest(SignedDigestScheme(headers: Self.headers), keys: keys) }
    public var bodyDescription: String { "an Ideogram generation" }

    /// A succeeded prediction whose output is the `data` array; one asset per image with a URL, due
    /// `created + ideogram.retention`, keeping the image's seed.
    public func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation {
        let body = try delivery.body.withUnsafeBufferPointer { buffer in
            Result { () throws(UnreadableDelivery) in try IdeogramBody.parse(buffer) }
        }.get()
        let id = body.generationID ?? delivery.subject ?? ""
        guard PredictionID.isSafe(id) else { throw UnreadableDelivery(PredictionID.rule) }
        let output = body.data.map { range in delivery.body.withUnsafeBufferPointer { JSONText.kept(range, of: $0) } }
        let deadline = (body.created ?? delivery.receivedAt).addingTimeInterval(retention)
        let assets = body.images.compactMap { image in
            image.url.map { AssetSpec(pointer: "/\(image.index)/url", source: .url($0), deadline: deadline, seed: image.seed) }
        }
        let prediction = PredictionRecord(
            id: id, status: body.error != nil && body.data == nil ? .failed : .succeeded,
            outputJSON: output, error: body.error, createdAt: body.created,
            completedAt: delivery.timestamp ?? delivery.receivedAt)
        return Interpretation(prediction: prediction, assets: assets)
    }
}
