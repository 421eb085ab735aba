import Foundation

/// How long Stability keeps an async result: 24 hours after the job was created.
public enum StabilityIntake {
    public static let resultRetention: TimeInterval = 24 * 3600
}

/// Stability AI: it sends no webhooks, so apps forward its answers to `POST /v1/webhooks/stability`, signed
/// with `stability.webhook_secret` the Standard Webhooks way. Inline bytes (v1 artifacts, v2beta
/// image/video/audio/result) are decoded into the spool and fsynced before the delivery is recorded; an
/// async reference becomes one `result` asset polled at `{stability.base_url}/v2beta/results/{id}` until
/// its deadline. Bodies are large, so each is recorded alone. The API keys go to `stability.base_url`'s
/// host only (`StabilitySource`).
public struct StabilityProvider: WebhookProvider {
    public static let name = ProviderName.stability
    public let routePath = "/v1/webhooks/stability"
    public let maxBodyBytes: Int
    public let commitStyle = CommitStyle.alone
    let baseURL: String
    let verifier: @Sendable () -> StandardWebhooksVerifier
    let source: StabilitySource

    /// `baseURL` is `stability.base_url`: references become `{baseURL}/v2beta/results/{id}`, or
    /// `{baseURL}/v2beta/audio/results/{id}` for `"kind": "audio"`.
    public init(
        baseURL: String, maxBodyBytes: Int = 64 << 20,
        verifier: @escaping @Sendable () -> StandardWebhooksVerifier = { StandardWebhooksVerifier(secrets: []) },
        source: StabilitySource = StabilitySource(apiKeys: { [] })
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.maxBodyBytes = maxBodyBytes
        self.verifier = verifier
        self.source = source
    }

    public static func make(_ context: ProviderContext) -> StabilityProvider {
        let reloadable = context.reloadable
        let baseURL = context.settings.stability.baseURL
        return StabilityProvider(
            baseURL: baseURL, maxBodyBytes: context.settings.http.stabilityMaxBodyBytes,
            verifier: { reloadable.stabilityVerifier },
            source: StabilitySource(
                apiKeys: { reloadable.current.stability.apiKeys },
                keyHost: { URL(string: baseURL)?.host }))
    }

    public var authentication: WebhookAuthentication { .standardWebhooks(.standard, verifier: verifier) }
    public var bodyDescription: String { "a Stability result" }
    public var resultSource: (any ResultSource)? { source }

    /// Every forwarded body may hold base64.
    public func mayCarryInlineOutputs(_ body: [UInt8]) -> Bool { true }

    /// Decodes each inline artifact straight from the body into the spool (no decoded copy in memory) and
    /// fsyncs them. The body is read as a `JSONSkeleton` (its structure, with strings over 1 KiB left where
    /// they are) and each base64 field decoded from the body in pieces, the same way whether the body is in
    /// memory or in the file it was spilled to (`WebhookDelivery.bodyFile`): a genuine 60 MiB body costs a
    /// few hundred KiB. A file-backed delivery comes back with its skeleton as `body`, which is what
    /// `interpret` reads. A body that is not a Stability result is left as it is (`interpret` says why);
    /// base64 that does not decode makes the whole delivery unreadable (kept raw, 400).
    public func spoolingInlineOutputs(of delivery: WebhookDelivery, into spool: Spool) throws -> WebhookDelivery {
        let body = delivery.rawBody
        let skeleton: JSONSkeleton
        do {
            skeleton = try JSONSkeleton(reading: body)
        } catch let error as JSONSkeleton.Failure {
            throw UnreadableDelivery(error.isSyntax ? "not valid JSON: \(error)" : "\(error)")
        }
        var decoded = delivery
        if delivery.bodyFile != nil { decoded.body = skeleton.bytes }
        guard let parsed = try? skeleton.bytes.withUnsafeBufferPointer({ try StabilityBody.parse($0) }), !parsed.artifacts.isEmpty else {
            return decoded
        }
        var spooled: [String: DecodedInline] = [:]
        do {
            for artifact in parsed.artifacts {
                spooled[artifact.pointer] = .spooled(try InlineSpooler.spool(artifact, in: skeleton, body: body, writer: try spool.inlineWriter()))
            }
            try spool.syncDirectory()
        } catch {
            for case .spooled(let file) in spooled.values { spool.remove(file.path) }
            if let invalid = error as? InlineSpooler.InvalidBase64 { throw UnreadableDelivery(invalid.description) }
            throw error
        }
        decoded.inlineOutputs = spooled
        return decoded
    }

    /// Inline bytes make a succeeded prediction with one `inline` asset per artifact (a pointer the
    /// prediction holds other bytes at, an app reusing its prediction_id, becomes a new output); a reference
    /// makes a processing one with one `result` asset, first polled 10 s after it arrived (a generation is
    /// rarely done sooner, and Stability asks clients to poll no more often). An optional `prediction_id`
    /// names the result; else the generation id, else the SHA-256 of the first artifact's bytes.
    public func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation {
        let parsed: StabilityBody
        do {
            parsed = try delivery.body.withUnsafeBufferPointer { try StabilityBody.parse($0) }
        } catch {
            throw UnreadableDelivery((error as? StabilityBody.ParseError)?.message ?? "\(error)")
        }
        let received = delivery.receivedAt
        var assets: [AssetSpec] = []
        var firstBytes: String?
        for artifact in parsed.artifacts {
            let decoded = delivery.inlineOutputs[artifact.pointer]
            var identity = AssetSpec.Identity.pointer
            if case .spooled(let file) = decoded {
                identity = .bytes(file.sha256)
                firstBytes = firstBytes ?? file.sha256
            }
            assets.append(
                AssetSpec(
                    pointer: artifact.pointer, source: .inline(marker: nil, decoded: decoded), deadline: nil,
                    identity: identity, finishReason: artifact.finishReason, seed: artifact.seed))
        }
        let inline = !assets.isEmpty
        if !inline, let generationID = parsed.generationID {
            let url = "\(baseURL)\(parsed.kind.resultsPath)\(generationID)"
            assets.append(
                AssetSpec(
                    pointer: "/id", source: .result(url), deadline: received.addingTimeInterval(StabilityIntake.resultRetention),
                    firstAttemptAt: received.addingTimeInterval(StabilitySource.minimumPollInterval),
                    identity: .sourceURL(url)))
        }
        guard let predictionID = parsed.predictionID ?? parsed.generationID ?? firstBytes else {
            throw UnreadableDelivery("the inline result was not decoded before it was recorded")
        }
        let prediction = PredictionRecord(
            id: predictionID, status: inline ? .succeeded : .processing, createdAt: received,
            completedAt: inline ? received : nil)
        return Interpretation(prediction: prediction, assets: assets)
    }

    /// A pointer qualified as `/image@<delivery>` (a reused prediction_id) names `/image` of its body.
    public func redecodeInline(pointer: String, body: UnsafeBufferPointer<UInt8>, into writer: Spool.Writer) throws -> Spooled {
        let parsed: StabilityBody
        do {
            parsed = try StabilityBody.parse(body)
        } catch {
            writer.discard()
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery cannot be decoded again: \(error)")
        }
        let inBody = pointer.split(separator: "@", maxSplits: 1).first.map(String.init) ?? pointer
        guard let artifact = parsed.artifacts.first(where: { $0.pointer == inBody }) else {
            writer.discard()
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery has nothing at \(pointer)")
        }
        // The spooler closes (and on failure removes) the file whatever happens.
        do {
            return try InlineSpooler.spool(artifact, body: body, writer: writer)
        } catch let error as InlineSpooler.InvalidBase64 {
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery cannot be decoded again: \(error)")
        }
    }
}
