import PQ

/// The one channel on which "these predictions got new or retried assets" is announced, and the format
/// of what is said on it: workers wake on any notification, and every instance's lookup cache forgets
/// the predictions named. Intake (after each group commit), retries (`assets retry`, the console) and
/// anything else that queues work send here; `ArchiveWorkers` and `LookupCacheInvalidator` LISTEN here.
///
/// Payload: one `provider/prediction id` per line, as few notifications as fit (a notification per
/// prediction cost PostgreSQL and each listener a queue entry and a wake-up per webhook); `*` means
/// "forget everything" (an id with a line break in it cannot be listed).
public enum AssetNotifications {
    /// The channel name (LISTEN/NOTIFY).
    public static let channel = "afterimage_assets"
    /// Tells every instance's lookup cache to forget all it holds.
    public static let everything = "*"
    /// PostgreSQL refuses payloads of 8000 bytes or more.
    static let maxPayloadBytes = 7900

    /// A prediction named in a notification.
    public struct Prediction: Hashable, Sendable {
        public let provider: ProviderName
        public let id: String
        public init(provider: ProviderName, id: String) {
            self.provider = provider
            self.id = id
        }
    }

    /// The payloads announcing `predictions`, in a stable order, each under PostgreSQL's limit.
    static func payloads(for predictions: Set<Prediction>) -> [String] {
        var payloads: [String] = []
        var current = ""
        var everything = false
        for prediction in predictions.sorted(by: { ($0.provider.rawValue, $0.id) < ($1.provider.rawValue, $1.id) }) {
            if prediction.id.utf8.contains(UInt8(ascii: "\n")) {
                everything = true
                continue
            }
            let line = prediction.provider.rawValue + "/" + prediction.id
            if !current.isEmpty, current.utf8.count + 1 + line.utf8.count > maxPayloadBytes {
                payloads.append(current)
                current = ""
            }
            current += current.isEmpty ? line : "\n" + line
        }
        if !current.isEmpty { payloads.append(current) }
        if everything { payloads.append(Self.everything) }
        return payloads
    }

    /// The same for one provider's ids (what intake has at hand).
    static func payloads(provider: ProviderName, ids: Set<String>) -> [String] {
        payloads(for: Set(ids.map { Prediction(provider: provider, id: $0) }))
    }

    /// What a received payload asks a lookup cache to forget.
    enum Invalidation: Equatable {
        case predictions([Prediction])
        case everything
    }

    /// Lines that name no prediction (an older daemon's bare provider name) are skipped.
    static func invalidation(fromPayload payload: String) -> Invalidation {
        if payload == everything { return .everything }
        return .predictions(
            payload.split(separator: "\n", omittingEmptySubsequences: true).compactMap { line in
                guard let slash = line.firstIndex(of: "/") else { return nil }
                let provider = line[..<slash]
                let id = line[line.index(after: slash)...]
                guard !provider.isEmpty, !id.isEmpty else { return nil }
                return Prediction(provider: ProviderName(rawValue: String(provider)), id: String(id))
            })
    }

    static let notifySQL = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"

    /// Sends the notifications for `predictions` inside `tx`: delivered at COMMIT, dropped on rollback.
    static func send(for predictions: Set<Prediction>, on tx: Connection) throws {
        guard !predictions.isEmpty else { return }
        let payloads = try PQArray<String>(payloads(for: predictions).map { Optional($0) })
        try tx.query(prepared: notifySQL, [channel, payloads])
    }
}
