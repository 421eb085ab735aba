import Foundation
import MicroHTTP

/// Where a delivery came from (`deliveries.source`).
public enum DeliverySource: String, Sendable {
    /// A provider's webhook (or an app forwarding one).
    case webhook
    /// Found by the Replicate reconciler in the provider's API.
    case reconcile
    /// `POST /v1/archives`.
    case api
}

/// One delivery as received, before anything is interpreted, whatever the provider: the body exactly as
/// it came (it is recorded raw before any parse), who it is from and how it is deduplicated.
public struct WebhookDelivery: Sendable {
    public var provider: ProviderName
    /// Deduplicates repeats (`deliveries.webhook_id`, unique per provider): Standard Webhooks' `webhook-id`;
    /// for Ed25519-signed deliveries the signed id plus the body's SHA-256 (`{id}:{sha256}`), since their
    /// retries are signed afresh; `reconcile:{id}:{status}` for what the reconciler found.
    public var deliveryID: String
    /// The id the signature names (Ideogram's generation id, fal's request id), when the scheme signs one.
    public var subject: String?
    /// The signed send time, when the scheme has one.
    public var timestamp: Date?
    /// What the provider interprets: the body as it came, or, for a body handed over as a file
    /// (`bodyFile`), its JSON skeleton (`JSONSkeleton`: the structure, with long strings left in the file),
    /// filled in on a handler pool thread before the delivery is interpreted.
    public var body: [UInt8]
    /// A large body the HTTP server spilled to disk while it arrived, for a route that takes bodies as files
    /// (`WebhookProvider.takesBodiesAsFiles`): it is decoded and recorded from the file in pieces, so it is
    /// never in memory.
    public var bodyFile: BodyFile?
    public var source: DeliverySource
    public var receivedAt: Date
    /// Inline outputs (Replicate data: URIs, Stability base64) decoded from the body into the spool before
    /// the delivery is recorded, by JSON pointer (see `WebhookProvider.spoolingInlineOutputs`).
    public var inlineOutputs: [String: DecodedInline] = [:]

    public init(
        provider: ProviderName, deliveryID: String, subject: String? = nil, timestamp: Date?, body: [UInt8],
        bodyFile: BodyFile? = nil, source: DeliverySource = .webhook, receivedAt: Date = Date()
    ) {
        self.provider = provider
        self.deliveryID = deliveryID
        self.subject = subject
        self.timestamp = timestamp
        self.body = body
        self.bodyFile = bodyFile
        self.source = source
        self.receivedAt = receivedAt
    }

    /// The raw body, wherever it is: what is recorded in `deliveries.body` and decoded from.
    public var rawBody: DeliveryBody { bodyFile.map { .file($0) } ?? .bytes(body) }

    /// The spool files decoded from this delivery.
    var spooledFiles: [Spooled] {
        inlineOutputs.values.compactMap { if case .spooled(let file) = $0 { file } else { nil } }
    }
}

/// What became of one inline output decoded before its delivery was recorded.
public enum DecodedInline: Sendable, Equatable {
    /// Its bytes are in the spool, fsynced.
    case spooled(Spooled)
    /// It does not decode (bad base64, empty): recorded as a failed asset with this reason.
    case malformed(reason: String)
}

/// What happened to one delivery; the route turns it into the HTTP answer.
public enum IntakeOutcome: Sendable, Equatable {
    /// Recorded and committed; `assets` counts the output files this delivery names for the prediction.
    case accepted(predictionID: String, assets: Int)
    /// This delivery was recorded before; nothing changed.
    case duplicate(predictionID: String?)
    /// Signed, kept raw, but not something we understand.
    case unparseable(message: String)
}
