import Foundation

/// URLs handed to `POST /v1/archives` by any app: one prediction per request id, one asset per URL (in
/// the order given), due at the request's `deadline`. No credential is sent with the downloads (the URLs
/// carry their own signatures, as OpenAI's and Black Forest Labs' do).
public struct ArchiveAPIProvider: IntakeProvider {
    public static let name = ProviderName.archive

    public static func make(_ context: ProviderContext) -> ArchiveAPIProvider { ArchiveAPIProvider() }

    public func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation {
        let request: ArchiveRequest
        do throws(ArchiveRequest.Invalid) {
            request = try ArchiveRequest.parse(delivery.body)
        } catch {
            throw UnreadableDelivery(error.message)
        }
        let prediction = PredictionRecord(
            id: request.id, status: .succeeded, inputJSON: request.metadataJSON,
            outputJSON: request.outputJSON, createdAt: delivery.receivedAt,
            completedAt: delivery.receivedAt)
        let assets = request.urls.enumerated().map { index, url in
            AssetSpec(pointer: "/\(index)", source: .url(url), deadline: request.deadline)
        }
        return Interpretation(prediction: prediction, assets: assets)
    }
}
