import Dispatch
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
/// One serial queue and a bounded backlog: when it is full, the entry is left to expire and the next
/// lookup reads the database itself.
public final class LookupRefresher: Sendable {
    let pool: Pool
    let cache: LookupCache
    let store = LookupStore()
    private let queue = DispatchQueue(label: "afterimage.lookup-refresh")
    private let backlog = Atomic<Int>(0)
    static let maxBacklog = 1024

    public init(pool: Pool, cache: LookupCache) {
        self.pool = pool
        self.cache = cache
    }

    /// Queues a re-read; a prediction no longer settled, or gone, is simply not stored again.
    public func refresh(provider: String, id: String) {
        guard backlog.wrappingAdd(1, ordering: .relaxed).oldValue < Self.maxBacklog else {
            backlog.subtract(1, ordering: .relaxed)
            return
        }
        queue.async { [self] in
            defer { backlog.subtract(1, ordering: .relaxed) }
            let generation = cache.generation()  // before the read: a concurrent invalidation wins
            if let view = try? pool.withConnection({ try store.prediction(provider: provider, id: id, on: $0) }) {
                cache.store(view, readAt: generation)
            }
        }
    }
}
