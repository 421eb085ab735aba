import Foundation
import Logging
import PQ
import Synchronization

/// Keeps a `LookupCache` honest when other processes change predictions: LISTENs on the assets channel,
/// where retries (from any instance or the `assets retry` command) and intakes that queue new assets
/// announce `provider/prediction`, and forgets that prediction. While the LISTEN connection is down nothing is heard, so the cache is emptied
/// when it drops and again when it is back.
public final class LookupCacheInvalidator: Sendable {
    let cache: LookupCache
    let databaseURL: String
    let logger: Logger
    private let running = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    public init(cache: LookupCache, databaseURL: String, logger: Logger) {
        self.cache = cache
        self.databaseURL = databaseURL
        self.logger = logger
    }

    public func start() {
        guard cache.isEnabled, !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in
            listenLoop()
            finished.signal()
        }
        thread.name = "afterimage-lookup-cache"
        thread.start()
    }

    /// Returns once the LISTEN connection is closed (within about half a second).
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    /// What a notification's payload asks the cache to forget.
    enum Invalidation: Equatable {
        case predictions([LookupCache.Key])
        case everything
    }

    /// The payload is one `provider/prediction` per line (intake sends one notification per batch);
    /// `*` means everything (intake's answer for a prediction id with a line break in it). Lines that
    /// name no prediction (an older daemon's bare provider name) are skipped.
    static func invalidation(fromPayload payload: String) -> Invalidation {
        if payload == ReplicateIntake.invalidateEverythingPayload { return .everything }
        return .predictions(payload.split(separator: "\n", omittingEmptySubsequences: true).compactMap { line in
            guard let slash = line.firstIndex(of: "/") else { return nil }
            let provider = line[..<slash], id = line[line.index(after: slash)...]
            guard !provider.isEmpty, !id.isEmpty else { return nil }
            return LookupCache.Key(provider: String(provider), id: String(id))
        })
    }

    private func listenLoop() {
        let isRunning = { self.running.load(ordering: .acquiring) }
        ChannelListener(databaseURL: databaseURL, channel: ReplicateIntake.assetsChannel).run(
            while: isRunning,
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
                logger.debug("lookup cache: LISTEN connection failed; entries expire by age until it is back",
                             metadata: ["error": "\(error)"])
            },
            pause: { for _ in 0..<5 where isRunning() { Thread.sleep(forTimeInterval: 0.2) } })
    }
}
