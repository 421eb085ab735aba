import Foundation
import Logging
import PQ
import Synchronization

/// Keeps a `LookupCache` honest when other processes change predictions: LISTENs on the assets channel,
/// where retries (from any instance or the `assets retry` command) and intakes that queue new assets
/// announce `provider/prediction`, and forgets that prediction. While the LISTEN connection is down nothing is heard, so the cache is emptied
/// when it drops and again when it is back.
public final class LookupCacheInvalidator: DaemonComponent {
    let cache: LookupCache
    let databaseURL: String
    let limits: SessionLimits
    let logger: Logger
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup

    public let name = "lookup cache invalidator"
    /// The LISTEN wait ends every half second; a connection attempt in progress is not waited for.
    public let stopBudget: Duration = .seconds(2)

    public init(
        cache: LookupCache, databaseURL: String, limits: SessionLimits = SessionLimits(),
        heartbeats: Heartbeats? = nil, logger: Logger
    ) {
        self.cache = cache
        self.databaseURL = databaseURL
        self.limits = limits
        self.logger = logger
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        guard cache.isEnabled else { return }
        threads.spawn("afterimage-lookup-cache") { [self] heartbeat in listenLoop(heartbeat) }
    }

    /// Returns once the LISTEN connection is closed (within about half a second).
    public func stop() {
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// What a notification's payload asks the cache to forget.
    enum Invalidation: Equatable {
        case predictions([LookupCache.Key])
        case everything
    }

    /// What a payload on the assets channel asks the cache to forget (the format is `AssetNotifications`').
    static func invalidation(fromPayload payload: String) -> Invalidation {
        switch AssetNotifications.invalidation(fromPayload: payload) {
        case .everything: .everything
        case .predictions(let named): .predictions(named.map { LookupCache.Key(provider: $0.provider.rawValue, id: $0.id) })
        }
    }

    private func listenLoop(_ heartbeat: Heartbeat) {
        ChannelListener(databaseURL: databaseURL, channel: AssetNotifications.channel, limits: limits, heartbeat: heartbeat).run(
            while: { !stopSignal.isStopped },
            connected: { cache.invalidateAll() },  // whatever changed while nobody was listening
            received: { notifications in
                for notification in notifications {
                    switch Self.invalidation(fromPayload: notification.payload) {
                    case .everything: cache.invalidateAll()
                    case .predictions(let keys): for key in keys { cache.invalidate(key) }
                    }
                }
            },
            failed: { error in
                cache.invalidateAll()
                logger.debug(
                    "lookup cache: LISTEN connection failed; entries expire by age until it is back",
                    metadata: ["error": "\(error)"])
            },
            pause: { stopSignal.sleep(1, heartbeat: heartbeat) })
    }
}
