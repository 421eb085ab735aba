import Foundation
import PQ

/// Replicate: predictions delivered by webhook (Standard Webhooks signatures), or found by the reconciler;
/// every http(s) URL and data: URI anywhere in a terminal prediction's `output` is an output to archive.
/// Downloads carry `replicate.api_token`, to `replicate.token_hosts` only.
public struct ReplicateProvider: WebhookProvider {
    public static let name = ProviderName.replicate
    public let routePath = "/v1/webhooks/replicate"
    public let maxBodyBytes: Int
    public let commitStyle = CommitStyle.groupCommit
    /// Seconds Replicate keeps an API prediction's outputs after it completes.
    let retention: TimeInterval
    let verifier: @Sendable () -> StandardWebhooksVerifier

    /// `verifier` is read per request, so a reload can swap `replicate.webhook_secret`.
    public init(
        retentionSeconds: Int, maxBodyBytes: Int = 16 << 20,
        verifier: @escaping @Sendable () -> StandardWebhooksVerifier = { StandardWebhooksVerifier(secrets: []) }
    ) {
        retention = TimeInterval(retentionSeconds)
        self.maxBodyBytes = maxBodyBytes
        self.verifier = verifier
    }

    public static func make(_ context: ProviderContext) -> ReplicateProvider {
        let reloadable = context.reloadable
        return ReplicateProvider(
            retentionSeconds: context.settings.replicate.retention, maxBodyBytes: context.settings.http.maxBodyBytes,
            verifier: { reloadable.replicateVerifier })
    }

    public var authentication: WebhookAuthentication { .standardWebhooks(.standard, verifier: verifier) }
    public var bodyDescription: String { "a prediction" }

    /// `replicate.api_token`, to `replicate.token_hosts` only (Replicate's file hosts).
    public static func sourceCredential(in settings: Settings) -> SourceCredential? {
        guard let token = settings.replicate.apiToken, !token.isEmpty else { return nil }
        return SourceCredential(token: token, hosts: settings.replicate.tokenHosts)
    }

    /// The prediction, and (when it is terminal and its data was not removed) the outputs this event alone
    /// names, found during the parse's single pass.
    public func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation {
        let prediction: ReplicatePrediction
        do throws(ReplicatePrediction.ParseError) {
            prediction = try ReplicatePrediction.parse(delivery.body)
        } catch {
            throw UnreadableDelivery(error.message)
        }
        let record = PredictionRecord(
            id: prediction.id, status: PredictionStatus(rawValue: prediction.status), model: prediction.model,
            version: prediction.version, inputJSON: prediction.inputJSON, outputJSON: prediction.outputJSON,
            metricsJSON: prediction.metricsJSON, error: prediction.error, createdAt: prediction.createdAt,
            startedAt: prediction.startedAt, completedAt: prediction.completedAt, dataRemoved: prediction.dataRemoved,
            source: prediction.source, deployment: prediction.deployment, deadline: prediction.deadline)
        let deadline = (prediction.completedAt ?? delivery.receivedAt).addingTimeInterval(retention)
        return Interpretation(prediction: record, assets: specs(prediction.outputs, deadline: deadline, delivery: delivery))
    }

    /// A prediction this event did not create is what the row holds now: its outputs are found again in the
    /// merged `output` (an early event may have created the row, the terminal one brings the outputs), due
    /// `replicate.retention` after the merged completion.
    public func assets(for interpretation: Interpretation, merged: MergedPrediction?, delivery: WebhookDelivery) -> [AssetSpec] {
        guard let merged else { return interpretation.assets }
        guard merged.status.isTerminal, !merged.dataRemoved, let output = merged.outputJSON else { return [] }
        let deadline = (merged.completedAt ?? delivery.receivedAt).addingTimeInterval(retention)
        return specs(OutputURLWalker.urls(inJSON: output), deadline: deadline, delivery: delivery)
    }

    /// URLs are downloaded before `deadline`; data: outputs are ours already (the spool, the delivery): no
    /// deadline. A data: output is matched by pointer with what was decoded from this delivery's body; with
    /// nothing decoded, the workers decode it from the recorded delivery.
    func specs(_ outputs: [OutputURLWalker.Found], deadline: Date, delivery: WebhookDelivery) -> [AssetSpec] {
        outputs.map { output in
            output.isData
                ? AssetSpec(
                    pointer: output.pointer, source: .inline(marker: output.url, decoded: delivery.inlineOutputs[output.pointer]),
                    deadline: nil)
                : AssetSpec(pointer: output.pointer, source: .url(output.url), deadline: deadline)
        }
    }
}

/// Records Replicate predictions outside the webhook route (the reconciler, tests): the shared intake with
/// Replicate as its only provider.
public struct ReplicateIntake: Sendable {
    public let provider: ReplicateProvider
    let recorder: DeliveryRecorder
    let spool: Spool?

    /// `spool`: where data: outputs are decoded before a delivery is recorded (`spoolingDataOutputs`); nil:
    /// the workers decode them from the recorded delivery.
    public init(retentionSeconds: Int, spool: Spool? = nil) {
        provider = ReplicateProvider(retentionSeconds: retentionSeconds)
        recorder = DeliveryRecorder(providers: [provider], spool: spool)
        self.spool = spool
    }

    /// Records one delivery on `connection` inside its own transaction.
    public func record(_ delivery: WebhookDelivery, on connection: Connection) throws -> IntakeOutcome {
        try recorder.record(delivery, on: connection)
    }

    public func recordRejected(_ delivery: WebhookDelivery, reason: String, on connection: Connection) throws -> IntakeOutcome {
        try recorder.recordRejected(delivery, reason: reason, on: connection)
    }

    /// The delivery with its data: outputs decoded into the spool (see `ReplicateProvider.spoolingInlineOutputs`).
    public func spoolingDataOutputs(of delivery: WebhookDelivery) throws -> WebhookDelivery {
        guard let spool else { return delivery }
        return try provider.spoolingInlineOutputs(of: delivery, into: spool)
    }

    public func removeSpoolFiles(of delivery: WebhookDelivery) {
        recorder.removeSpoolFiles(of: delivery)
    }
}
