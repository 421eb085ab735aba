import Foundation
import Synchronization

/// Settled predictions kept in memory so that most lookups never reach PostgreSQL.
///
/// Apps poll for their images, so the same prediction is looked up again and again once it is archived,
/// and by then its answer hardly changes. Only a *settled* prediction is kept: a terminal status and every
/// asset stored, failed or expired. What can still change one, and how the cache learns of it:
/// - a retry (`POST /v1/assets/{id}/retry`, `afterimage assets retry`, any instance) or new assets (a
///   late webhook with the output, any instance): both send NOTIFY with `provider/prediction`, which
///   `LookupCacheInvalidator` turns into `invalidate`; a write answered by this process also invalidates
///   directly;
/// - a later webhook filling in other fields of a terminal prediction: the route that recorded it
///   invalidates; one recorded by another instance (or a hand edit in SQL) is seen when the entry's time
///   runs out (`api.lookup_cache_seconds`), which bounds how stale any answer can be.
/// Presigned URLs are never cached: each answer is signed afresh.
///
/// A lookup that read the database before an invalidation must not put its older answer back: every
/// invalidation bumps a generation, and `store` refuses a view read under an earlier one.
///
/// Memory is bounded by `api.lookup_cache_bytes`, whatever the table's size: with millions of predictions
/// the cache can never hold them all, so what it keeps matters. Entries are evicted in CLOCK order (a
/// second-chance approximation of least-recently-used): a hit only sets the entry's reference bit, without
/// the shard's lock, and eviction passes over entries whose bit is set, clearing it. So the predictions
/// apps keep polling (the recent ones) stay, and a sweep of one-off lookups of old ones washes through
/// without pushing them out.
public final class LookupCache: Sendable {
    public struct Key: Hashable, Sendable {
        public let provider: String
        public let id: String
        public init(provider: String, id: String) {
            self.provider = provider
            self.id = id
        }
    }

    /// A class, so that handing an entry out of the lock is one retain rather than a copy of every field.
    final class Entry: Sendable {
        let view: PredictionView
        let expiresAt: ContinuousClock.Instant
        /// Past this, the first reader asks for the entry to be read again before it expires.
        let refreshAfter: ContinuousClock.Instant
        let refreshClaimed = Atomic<Bool>(false)
        /// CLOCK's reference bit: set by every hit, cleared when eviction passes over the entry.
        let referenced = Atomic<Bool>(false)
        let bytes: Int
        init(view: PredictionView, expiresAt: ContinuousClock.Instant, refreshAfter: ContinuousClock.Instant, bytes: Int) {
            self.view = view
            self.expiresAt = expiresAt
            self.refreshAfter = refreshAfter
            self.bytes = bytes
        }
    }

    /// One shard's entries and its CLOCK: `ring` holds every entry's key at its slot (nil slots are free,
    /// listed in `freeSlots`), and `hand` is where the next eviction looks.
    struct Shard {
        var entries: [Key: (entry: Entry, slot: Int)] = [:]
        var ring: [Key?] = []
        var freeSlots: [Int] = []
        var hand = 0
        var bytes = 0

        subscript(key: Key) -> Entry? { entries[key]?.entry }

        mutating func insert(_ entry: Entry, for key: Key) {
            remove(key)
            let slot: Int
            if let free = freeSlots.popLast() {
                slot = free
                ring[slot] = key
            } else {
                slot = ring.count
                ring.append(key)
            }
            entries[key] = (entry, slot)
            bytes += entry.bytes
        }

        @discardableResult
        mutating func remove(_ key: Key) -> Entry? {
            guard let (entry, slot) = entries.removeValue(forKey: key) else { return nil }
            ring[slot] = nil
            freeSlots.append(slot)
            bytes -= entry.bytes
            return entry
        }

        /// Removes `key` only if it still maps to this very entry (a newer copy stays).
        mutating func remove(_ key: Key, ifStill entry: Entry) {
            if entries[key]?.entry === entry { remove(key) }
        }

        /// Evicts one entry in CLOCK order: expired ones at once, referenced ones after a second chance.
        /// False when the shard is empty. At most two turns of the ring: the first clears every bit.
        mutating func evictOne(now: ContinuousClock.Instant) -> Bool {
            guard !entries.isEmpty else { return false }
            while true {
                if hand >= ring.count { hand = 0 }
                defer { hand += 1 }
                guard let key = ring[hand], let entry = entries[key]?.entry else { continue }
                if entry.expiresAt <= now || !entry.referenced.exchange(false, ordering: .relaxed) {
                    remove(key)
                    return true
                }
            }
        }

        mutating func removeAll() {
            entries.removeAll()
            ring.removeAll()
            freeSlots.removeAll()
            hand = 0
            bytes = 0
        }
    }

    /// A `Mutex` cannot live in an array (it is not copyable); each shard's lives in a box.
    final class LockedShard: Sendable {
        let mutex = Mutex(Shard())
        func withLock<T>(_ body: (inout Shard) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    /// How long an entry is trusted; zero turns the cache off.
    public let lifetime: Duration
    /// Bound on the memory the entries take (their text plus a fixed cost per entry and per asset):
    /// `api.lookup_cache_bytes`.
    public let maxBytes: Int
    /// Many threads look up at once: one lock would have them queue (it was 10% of the
    /// lookup path's CPU in bench/lookup), so keys are spread over independently locked shards.
    private let shards: [LockedShard]
    private let shardBudget: Int
    /// Bumped by every invalidation, before the entry is removed (see `store`).
    private let generationCounter = Atomic<UInt64>(0)
    private let clock = ContinuousClock()

    static let shardCount = 16
    /// A prediction larger than this share of a shard's budget is not cached (it would evict too much).
    static let maxEntryShare = 4

    /// `api.lookup_cache_bytes`'s default: about 8,000 typical predictions (2 KiB each with their assets).
    public static let defaultMaxBytes = 16 << 20

    public init(lifetimeSeconds: Int, maxBytes: Int = LookupCache.defaultMaxBytes) {
        lifetime = .seconds(max(0, lifetimeSeconds))
        self.maxBytes = max(0, maxBytes)
        shardBudget = self.maxBytes / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in LockedShard() }
    }

    public var isEnabled: Bool { lifetime > .zero && shardBudget > 0 }

    private func shard(_ key: Key) -> LockedShard {
        shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))]
    }

    /// The generation to pass to `store` after reading the database; read it *before* the query.
    public func generation() -> UInt64 { generationCounter.load(ordering: .acquiring) }

    /// The cached view, if it is still within its lifetime.
    public func view(for key: Key) -> PredictionView? { lookup(key)?.view }

    /// The cached view, and whether this caller should read it again from the database now (true for
    /// one caller only, once the entry is past half its lifetime): refreshing ahead keeps popular
    /// predictions from ever missing, so their lookups never wait for the database, while the lifetime
    /// still bounds how stale an answer can be.
    public func lookup(_ key: Key) -> (view: PredictionView, refresh: Bool)? {
        guard isEnabled else { return nil }
        let entry = shard(key).withLock { $0[key] }
        guard let entry else { return nil }
        let now = clock.now
        guard entry.expiresAt > now else {
            shard(key).withLock { $0.remove(key, ifStill: entry) }
            return nil
        }
        // Only a load first: a store on every hit would make the entry's cache line bounce between cores.
        if !entry.referenced.load(ordering: .relaxed) { entry.referenced.store(true, ordering: .relaxed) }
        let refresh =
            now >= entry.refreshAfter
            && entry.refreshClaimed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        return (entry.view, refresh)
    }

    /// Keeps `view` if it is settled and nothing was invalidated since `generation` was read.
    ///
    /// Why this is enough: an invalidation bumps the generation first and then removes the key under the
    /// shard's lock. A store that checks the generation under that lock either sees the bump and refuses,
    /// or comes before the removal, which then takes its entry away.
    public func store(_ view: PredictionView, readAt generation: UInt64) {
        guard isEnabled, view.isSettled else { return }
        let size = Self.approximateBytes(of: view)
        guard size <= shardBudget / Self.maxEntryShare else { return }
        let now = clock.now
        // Each entry lives a random 50–100% of the lifetime: entries filled together (a burst of lookups, a
        // start) would otherwise expire together and send a burst of misses to the database at once.
        let life = lifetime * Double.random(in: 0.5...1.0)
        let entry = Entry(view: view, expiresAt: now.advanced(by: life), refreshAfter: now.advanced(by: life / 2), bytes: size)
        let key = Key(provider: view.provider, id: view.id)
        let budget = shardBudget
        shard(key).withLock { shard in
            guard generationCounter.load(ordering: .acquiring) == generation else { return }
            shard.remove(key)
            while shard.bytes + size > budget, shard.evictOne(now: now) {}
            shard.insert(entry, for: key)
        }
    }

    /// Forgets one prediction (after a write that may have changed it).
    public func invalidate(_ key: Key) {
        generationCounter.add(1, ordering: .acquiringAndReleasing)
        shard(key).withLock { _ = $0.remove(key) }
    }

    /// Forgets everything: after the invalidation feed was interrupted, any entry may be stale.
    public func invalidateAll() {
        generationCounter.add(1, ordering: .acquiringAndReleasing)
        for shard in shards {
            shard.withLock { $0.removeAll() }
        }
    }

    var count: Int { shards.reduce(0) { total, shard in total + shard.withLock { $0.entries.count } } }
    var bytesUsed: Int { shards.reduce(0) { total, shard in total + shard.withLock { $0.bytes } } }

    static func approximateBytes(of view: PredictionView) -> Int {
        func n(_ s: String?) -> Int { s?.utf8.count ?? 0 }
        var total =
            256 + n(view.provider) + n(view.id) + n(view.status) + n(view.model) + n(view.version)
            + n(view.inputJSON) + n(view.error) + 5 * 32
        for a in view.assets {
            total +=
                320 + n(a.provider) + n(a.predictionID) + n(a.pointer) + n(a.sha256) + n(a.contentType) + n(a.key)
                + n(a.failureReason) + n(a.sourceURL) + n(a.finishReason)
        }
        return total
    }
}

extension PredictionView {
    /// Nothing about it changes any more except through a retry or a late fill-in (see `LookupCache`).
    public var isSettled: Bool {
        PredictionStatus(rawValue: status).isTerminal && assets.allSatisfy(\.state.isSettled)
    }
}
