import Foundation
import PQ
import Synchronization

/// Reads cached predictions again off the request path, before their entries expire.
///
/// Why: when an entry expired, the next lookup of that prediction waited for the database on a pool
/// thread while every other lookup was answered from memory; under load those few waits made the whole
/// tail (bench/lookup: p99 from 6 ms to 13–96 ms once entries began to expire). Now the first lookup past
/// half an entry's lifetime is still answered from memory and asks for a fresh copy here, so a prediction
/// that is looked up keeps a fresh entry and its lookups never wait. The lifetime still bounds staleness.
///
/// One thread of the daemon's own and a bounded backlog: when it is full (or the refresher is not
/// running), the entry is left to expire and the next lookup reads the database itself.
public final class LookupRefresher: DaemonComponent {
    let pool: Pool
    let cache: LookupCache
    let store = LookupStore()
    private let backlog = Mutex<[LookupCache.Key]>([])
    private let running = Atomic<Bool>(false)
    private let stopSignal = StopSignal()
    private let threads: ThreadGroup
    static let maxBacklog = 1024

    public let name = "lookup refresher"
    /// A read in progress is not waited for past this.
    public let stopBudget: Duration = .seconds(2)

    public init(pool: Pool, cache: LookupCache, heartbeats: Heartbeats? = nil) {
        self.pool = pool
        self.cache = cache
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        guard cache.isEnabled, !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        threads.spawn("afterimage-lookup-refresh") { [self] heartbeat in
            while !stopSignal.isStopped {
                let keys = backlog.withLock { keys in
                    defer { keys = [] }
                    return keys
                }
                for key in keys where !stopSignal.isStopped {
                    heartbeat.beat()
                    read(key)
                }
                if keys.isEmpty { stopSignal.waitForWork(1, heartbeat: heartbeat) }
            }
        }
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        stopSignal.stop()
        threads.join(timeout: stopBudget)
    }

    /// Queues a re-read; a prediction no longer settled, or gone, is simply not stored again.
    public func refresh(provider: String, id: String) {
        guard running.load(ordering: .relaxed) else { return }
        let queued = backlog.withLock { keys -> Bool in
            guard keys.count < Self.maxBacklog else { return false }
            keys.append(LookupCache.Key(provider: provider, id: id))
            return true
        }
        if queued { stopSignal.wake() }
    }

    private func read(_ key: LookupCache.Key) {
        let generation = cache.generation()  // before the read: a concurrent invalidation wins
        if let view = try? pool.withConnection({ try store.prediction(provider: key.provider, id: key.id, on: $0) }) {
            cache.store(view, readAt: generation)
        }
    }
}
