import Curl
import Foundation
import Logging

// The shape of a provider plug-in. Everything that differs between providers is here and in the
// provider's own folder (Providers/<Name>/); intake, the queue, the workers, the spool, the upload and the
// lookups are shared and know providers only by these requirements. To add one, see the README section
// "Adding a provider".

/// What Afterimage needs from any source of outputs: its name, how it is built from the configuration,
/// the credential its downloads carry (and the only hosts that may receive it), how to decode its inline
/// outputs again, and how to poll its results. Webhook providers (`WebhookProvider`) add how deliveries
/// arrive and what they mean; the archive API is a provider of this kind only. Every provider is listed
/// once, in `ProviderRegistry.all`.
public protocol Provider: Sendable {
    static var name: ProviderName { get }
    /// The provider as the daemon runs it, from the configuration.
    static func make(_ context: ProviderContext) -> Self
    /// Sent with downloads of this provider's assets, to the hosts it names only, decided for every hop
    /// (a redirect elsewhere never carries it). Asked per job with the settings in force, so a reload can
    /// change it. Nil: downloads carry no credential.
    static func sourceCredential(in settings: Settings) -> SourceCredential?
    /// Decodes an `inline` asset's bytes again from its recorded delivery body, for when its spool file is
    /// gone (another machine's spool, a lost disk). Throws `ArchiveError` (`inline_lost`) when it cannot.
    func redecodeInline(pointer: String, body: UnsafeBufferPointer<UInt8>, into writer: Spool.Writer) throws -> Spooled
    /// Polls this provider's `result` assets (an asynchronous generation fetched from its API); nil when it
    /// has none.
    var resultSource: (any ResultSource)? { get }
}

extension Provider {
    public var name: ProviderName { Self.name }
    public static func sourceCredential(in settings: Settings) -> SourceCredential? { nil }
    public func redecodeInline(pointer: String, body: UnsafeBufferPointer<UInt8>, into writer: Spool.Writer) throws -> Spooled {
        writer.discard()
        throw ArchiveError(.inlineLost, "\(name) has no inline outputs to decode again")
    }
    public var resultSource: (any ResultSource)? { nil }
}

/// What a provider is built from: the configuration at start, the reloadable part of it (secrets and keys
/// read per request or job), and where it may keep files (fetched key sets).
public struct ProviderContext: Sendable {
    public let settings: Settings
    public let reloadable: ReloadableSettings
    /// A directory of the daemon's own for a provider's cached files (`{workers.spool_dir}/keys`).
    public let keyCacheDirectory: String?
    public let logger: Logger

    public init(settings: Settings, reloadable: ReloadableSettings, keyCacheDirectory: String?, logger: Logger) {
        self.settings = settings
        self.reloadable = reloadable
        self.keyCacheDirectory = keyCacheDirectory
        self.logger = logger
    }
}

/// A provider whose deliveries are recorded by the shared intake (`DeliveryRecorder`): what a body means.
public protocol IntakeProvider: Provider {
    /// What a body means: the prediction and the outputs this delivery names. Throws for a body that is not
    /// what the provider sends (kept raw, answered 400). Runs on a committer thread for group commits:
    /// it must not block.
    func interpret(_ delivery: WebhookDelivery) throws(UnreadableDelivery) -> Interpretation
    /// The assets to queue once the prediction row is merged. `merged` is nil when this delivery created
    /// the row. The default is the delivery's own outputs; Replicate walks the merged `output` instead, so a
    /// terminal event that arrives after an earlier one still queues what the prediction holds.
    func assets(for interpretation: Interpretation, merged: MergedPrediction?, delivery: WebhookDelivery) -> [AssetSpec]
}

extension IntakeProvider {
    public func assets(for interpretation: Interpretation, merged: MergedPrediction?, delivery: WebhookDelivery) -> [AssetSpec] {
        interpretation.assets
    }
}

/// A provider that delivers by webhook: where, how it is authenticated, and how its bodies are committed.
public protocol WebhookProvider: IntakeProvider {
    /// `POST` path of its route, e.g. `/v1/webhooks/ideogram`.
    var routePath: String { get }
    /// Larger bodies get 413 (before they are read when a `Content-Length` says so).
    var maxBodyBytes: Int { get }
    /// How deliveries reach the database (see `CommitStyle`).
    var commitStyle: CommitStyle { get }
    /// Whether a body large enough to have been spilled to disk while it arrived (over 1 MiB) reaches intake
    /// as that file (`WebhookDelivery.bodyFile`): parsed as a skeleton, its inline outputs decoded and the
    /// raw body recorded in pieces, so it is never in memory. Only for `.alone` providers (a group commit
    /// holds its bodies in memory); the default is exactly those.
    var takesBodiesAsFiles: Bool { get }
    /// How a delivery is authenticated: header names, scheme, secrets or keys. Read per request, so a
    /// reload can swap secrets.
    var authentication: WebhookAuthentication { get }
    /// What a body should have been, for the 400 that keeps one it does not understand ("a prediction").
    var bodyDescription: String { get }
    /// Cheap test on the event thread: may the body carry inline outputs to decode before recording?
    func mayCarryInlineOutputs(_ body: [UInt8]) -> Bool
    /// Decodes the body's inline outputs into the spool and fsyncs them, so a 2xx sent after recording
    /// promises the bytes are on disk. Runs on a handler pool thread. Throws `UnreadableDelivery` when the
    /// body's inline content cannot be decoded at all, `ArchiveError` when the spool cannot take it.
    func spoolingInlineOutputs(of delivery: WebhookDelivery, into spool: Spool) throws -> WebhookDelivery
}

extension WebhookProvider {
    public var bodyDescription: String { "a \(name) delivery" }
    public var takesBodiesAsFiles: Bool { commitStyle == .alone }
    public func mayCarryInlineOutputs(_ body: [UInt8]) -> Bool { false }
    public func spoolingInlineOutputs(of delivery: WebhookDelivery, into spool: Spool) throws -> WebhookDelivery { delivery }
}

/// How a provider's deliveries are committed.
public enum CommitStyle: Sendable {
    /// Queued for the next group commit (`IntakeBatcher`): many small bodies share a transaction and an
    /// fsync, answered when it commits or after `http.intake_timeout`.
    case groupCommit
    /// Recorded alone on a handler pool thread: bodies too large to batch (Stability's inline videos), whose
    /// inline content is decoded into the spool first. Bounded by the database session deadlines.
    case alone
}

/// A signed body that is not what the provider sends; the delivery is kept raw and answered 400.
public struct UnreadableDelivery: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What one delivery says: the prediction (merged into its row so fields only fill in and a terminal
/// status is never replaced) and the outputs it names.
public struct Interpretation: Sendable {
    public var prediction: PredictionRecord
    public var assets: [AssetSpec]

    public init(prediction: PredictionRecord, assets: [AssetSpec]) {
        self.prediction = prediction
        self.assets = assets
    }
}

/// A prediction's columns as a delivery states them (nil: not stated; fills in from later deliveries).
public struct PredictionRecord: Sendable {
    public var id: String
    public var status: PredictionStatus
    public var model: String?
    public var version: String?
    /// JSON text, stored as jsonb: the provider's input, output and metrics (or what stands for them).
    public var inputJSON: String?
    public var outputJSON: String?
    public var metricsJSON: String?
    public var error: String?
    public var createdAt: Date?
    public var startedAt: Date?
    public var completedAt: Date?
    public var dataRemoved: Bool
    public var source: String?
    public var deployment: String?
    public var deadline: Date?

    public init(
        id: String, status: PredictionStatus, model: String? = nil, version: String? = nil, inputJSON: String? = nil,
        outputJSON: String? = nil, metricsJSON: String? = nil, error: String? = nil, createdAt: Date? = nil,
        startedAt: Date? = nil, completedAt: Date? = nil, dataRemoved: Bool = false, source: String? = nil,
        deployment: String? = nil, deadline: Date? = nil
    ) {
        self.id = id
        self.status = status
        self.model = model
        self.version = version
        self.inputJSON = inputJSON
        self.outputJSON = outputJSON
        self.metricsJSON = metricsJSON
        self.error = error
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.dataRemoved = dataRemoved
        self.source = source
        self.deployment = deployment
        self.deadline = deadline
    }
}

/// A prediction row as it stands after this delivery was merged into it (for a row that existed before).
public struct MergedPrediction: Sendable {
    public let status: PredictionStatus
    public let outputJSON: String?
    public let completedAt: Date?
    public let dataRemoved: Bool
}

/// One output file a delivery names.
public struct AssetSpec: Sendable {
    /// Where the bytes come from.
    public enum Source: Sendable {
        /// Downloaded from this http(s) URL.
        case url(String)
        /// Decoded from the delivery's body: never downloaded. `marker` is kept as `source_url` (Replicate
        /// keeps the data: URI's header); nil records `inline:deliveries/{delivery}#{pointer}`. `decoded` is
        /// what was decoded before recording; nil: the workers decode it from the recorded delivery.
        case inline(marker: String?, decoded: DecodedInline?)
        /// Polled at this URL by the provider's `ResultSource` until it is ready or its deadline passes.
        case result(String)
    }

    /// When a later delivery names the same pointer, what makes it the same output.
    public enum Identity: Sendable, Equatable {
        /// The pointer alone (the provider's outputs at a pointer never change).
        case pointer
        /// These bytes (a SHA-256): other bytes at the same pointer (an app reusing its own id) are a new
        /// output, recorded under `pointer@{delivery}` with the next free index: never dropped.
        case bytes(String)
        /// This source URL, likewise.
        case sourceURL(String)
    }

    /// RFC 6901 pointer into the prediction's output (or the body) naming where the output was found.
    public var pointer: String
    public var source: Source
    /// When the provider deletes it; nil: never (claimed after every asset that has one).
    public var deadline: Date?
    /// The first try is not before this (Stability asks for 10 s between polls); nil: at once.
    public var firstAttemptAt: Date?
    public var identity: Identity = .pointer
    /// What the provider reported about this output.
    public var finishReason: String?
    public var seed: Int64?

    public init(
        pointer: String, source: Source, deadline: Date?, firstAttemptAt: Date? = nil, identity: Identity = .pointer,
        finishReason: String? = nil, seed: Int64? = nil
    ) {
        self.pointer = pointer
        self.source = source
        self.deadline = deadline
        self.firstAttemptAt = firstAttemptAt
        self.identity = identity
        self.finishReason = finishReason
        self.seed = seed
    }

    /// A plain download with nothing else to record: the cheap insert path.
    var isPlainURL: Bool {
        if case .url = source, firstAttemptAt == nil, identity == .pointer, finishReason == nil, seed == nil { return true }
        return false
    }
}

/// Polls a provider's asynchronous results (`result` assets): the bytes into the spool, or `ArchiveError`
/// (`not_ready` to poll again later, `source_status` for the provider's refusal).
public protocol ResultSource: Sendable {
    func poll(
        _ job: ArchiveJob, spool: Spool, session: CurlSession, policy: FetchPolicy,
        shouldAbort: @escaping @Sendable () -> Bool
    ) throws -> FetchedResult
}

/// A polled result in the spool, and what the provider said about it.
public struct FetchedResult: Sendable {
    public let spooled: Spooled
    public let finishReason: String?
    public let seed: Int64?
}
