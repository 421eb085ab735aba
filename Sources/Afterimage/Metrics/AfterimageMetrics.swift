import Foundation
import Metrics
import MicroHTTP
import PQ
import Prometheus

/// The daemon's metrics, recorded through swift-metrics and exported by swift-prometheus at
/// `/metrics`. Names follow Prometheus conventions (`_total` counters, `_seconds` and `_bytes` units);
/// labels carry only closed sets (provider, outcome, state, direction), never ids or URLs, so the
/// number of series stays bounded whatever the traffic.
///
/// Until `bootstrap()` runs (unit tests, other commands) swift-metrics discards everything.
public enum AfterimageMetrics {
    /// The registry `/metrics` renders; the swift-metrics factory writes into it.
    public static let registry = PrometheusCollectorRegistry()

    enum Name {
        static let webhooks = "afterimage_webhooks_total"
        static let webhookDuplicates = "afterimage_webhook_duplicates_total"
        static let ackSeconds = "afterimage_webhook_ack_seconds"
        static let transferBytes = "afterimage_transfer_bytes_total"
        static let transferSeconds = "afterimage_transfer_seconds"
        static let webhookToStored = "afterimage_webhook_to_stored_seconds"
        static let deadlineMisses = "afterimage_deadline_misses_total"
        static let assets = "afterimage_assets"
        static let oldestDeadline = "afterimage_oldest_pending_deadline_timestamp_seconds"
        static let poolConnections = "afterimage_db_pool_connections"
        static let poolWaiting = "afterimage_db_pool_waiting"
    }

    /// Installs the Prometheus backend. Call once, in `serve`, before the daemon starts
    /// (swift-metrics allows one bootstrap per process).
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // An acknowledgement is a signature check and one transaction: milliseconds.
        factory.durationHistogramBuckets[Name.ackSeconds] =
            [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000].map { .milliseconds($0) }
        // Transfers of files up to gigabytes.
        factory.durationHistogramBuckets[Name.transferSeconds] =
            [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800].map { .milliseconds(Int64($0 * 1000)) }
        // Against a provider retention of an hour: how much of it the pipeline uses.
        factory.durationHistogramBuckets[Name.webhookToStored] =
            [1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200].map { .seconds($0) }
        MetricsSystem.bootstrap(factory)
    }

    /// Wraps a webhook route's handler: counts the outcome (from the answer's status, or the status of
    /// what it threw) and times the acknowledgement.
    public static func instrumentWebhook(provider: ProviderName, _ handler: @escaping Handler) -> Handler {
        { request in
            let started = ContinuousClock.now
            do {
                let response = try handler(request)
                webhookAnswered(provider: provider, status: response.status, since: started)
                return response
            } catch {
                // Webhook routes answer their own failures; anything else thrown is the router's 5xx.
                webhookAnswered(provider: provider, status: (error as? any ResponseError)?.status ?? 500, since: started)
                throw error
            }
        }
    }

    /// Counts one webhook answer by outcome and records how long it took to give.
    public static func webhookAnswered(provider: ProviderName, status: Int, since started: ContinuousClock.Instant) {
        let outcome =
            switch status {
            case 200..<300: "accepted"
            case 401: "unauthorized"
            case 413: "too_large"
            case 400..<500: "invalid"
            case 503: "unavailable"
            default: "error"
            }
        let elapsed = ContinuousClock.now - started
        if let instruments = webhookInstruments[provider] {
            instruments.outcomes[outcome]?.increment()
            instruments.ackTime.record(duration: elapsed)
        } else {
            Metrics.Counter(label: Name.webhooks, dimensions: [("provider", provider.rawValue), ("outcome", outcome)]).increment()
            Metrics.Timer(label: Name.ackSeconds, dimensions: [("provider", provider.rawValue)]).record(duration: elapsed)
        }
    }

    /// A webhook provider's counters and timer, made once: asking swift-metrics for them per request (a
    /// registry lookup under a lock, label hashing) showed in the intake profile. Created on first use,
    /// which is after `bootstrap()` in `serve` (made earlier they would stay no-ops).
    final class WebhookInstruments: Sendable {
        static let outcomeNames = ["accepted", "unauthorized", "too_large", "invalid", "unavailable", "error"]
        let outcomes: [String: Metrics.Counter]
        let ackTime: Metrics.Timer

        init(provider: ProviderName) {
            outcomes = Dictionary(
                uniqueKeysWithValues: Self.outcomeNames.map {
                    ($0, Metrics.Counter(label: Name.webhooks, dimensions: [("provider", provider.rawValue), ("outcome", $0)]))
                })
            ackTime = Metrics.Timer(label: Name.ackSeconds, dimensions: [("provider", provider.rawValue)])
        }
    }

    static let webhookInstruments: [ProviderName: WebhookInstruments] = Dictionary(
        uniqueKeysWithValues: [ProviderName.replicate, .stability, .ideogram, .fal, .archive].map { ($0, WebhookInstruments(provider: $0)) })

    /// A delivery seen before (same webhook-id): acknowledged again, nothing new recorded.
    public static func webhookDuplicate(provider: ProviderName) {
        Metrics.Counter(label: Name.webhookDuplicates, dimensions: [("provider", provider.rawValue)]).increment()
    }

    public enum Direction: String, Sendable { case download, upload }

    /// A finished transfer's bytes and duration.
    public static func transfer(_ direction: Direction, provider: ProviderName, bytes: Int64, since started: ContinuousClock.Instant) {
        let dimensions = [("direction", direction.rawValue), ("provider", provider.rawValue)]
        Metrics.Counter(label: Name.transferBytes, dimensions: dimensions).increment(by: Int64(max(0, bytes)))
        Metrics.Timer(label: Name.transferSeconds, dimensions: dimensions).record(duration: ContinuousClock.now - started)
    }

    /// An asset recorded as stored: how long since its webhook arrived, and whether it beat its deadline.
    /// The timing comes from the row's own timestamps (the database's clock for both), returned by the
    /// statement that recorded the outcome.
    public static func stored(provider: ProviderName, _ timing: ArchiveQueue.StoredTiming) {
        Metrics.Timer(label: Name.webhookToStored, dimensions: [("provider", provider.rawValue)])
            .recordNanoseconds(Int64(max(0, timing.secondsSinceWebhook) * 1e9))
        if timing.late { deadlineMissed(provider: provider) }
    }

    /// An asset stored after its deadline, or given up as expired.
    public static func deadlineMissed(provider: ProviderName) {
        Metrics.Counter(label: Name.deadlineMisses, dimensions: [("provider", provider.rawValue)]).increment()
    }

    /// The queue as the last `QueueMonitor` query saw it.
    static func queue(_ stats: QueueStats) {
        for state in QueueStats.states {
            Metrics.Gauge(label: Name.assets, dimensions: [("state", state)]).record(stats.counts[state] ?? 0)
        }
        Metrics.Gauge(label: Name.oldestDeadline).record(stats.oldestDeadline?.timeIntervalSince1970 ?? 0)
    }

    /// The pool right now: connections lent and idle, callers waiting for one.
    static func pool(_ pool: Pool) {
        let stats = pool.stats
        Metrics.Gauge(label: Name.poolConnections, dimensions: [("state", "in_use")]).record(stats.inUse)
        Metrics.Gauge(label: Name.poolConnections, dimensions: [("state", "idle")]).record(stats.idle)
        Metrics.Gauge(label: Name.poolWaiting).record(stats.waiting)
    }
}
