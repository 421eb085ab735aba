import Foundation
import PQ
import Synchronization

/// Lookups the cache cannot answer, gathered: concurrent lookups of different predictions are read from
/// PostgreSQL in one statement (`p.id = ANY($2)`), and no thread waits per lookup.
///
/// Why: with millions of predictions the cache holds a small share of them, and most lookups of random
/// ids miss. One lookup per pooled connection and per pool thread made the daemon's and PostgreSQL's
/// per-statement costs (a hand-over to a pool thread and back, a round trip, executor start-up) the
/// bound (bench/scale: about a quarter of `pgbench -S` at a million predictions). Here a lookup is
/// queued from the event thread, a few reader threads each take everything queued so far (at most
/// `maxBatch`), read it in one statement per provider, and answer each through its callback. There is
/// no artificial delay: an idle reader takes a lone lookup at once, and batches form only while earlier
/// reads are running, so at low load a lookup costs what it did.
public final class LookupBatcher: DaemonComponent {
    public struct Configuration: Sendable {
        /// Two, like intake's committers: on the 2-core benchmark machine more readers only contend for
        /// the cores with PostgreSQL; one leaves the machine idle during each read.
        public var readers = 2
        public var maxBatch = 64
        public init() {}
    }

    /// What a lookup is answered with: the prediction, nil when there is none, or why it could not be read.
    public typealias Completion = @Sendable (Result<PredictionView?, any Error>) -> Void

    struct Pending: Sendable {
        let key: LookupCache.Key
        let completion: Completion
    }

    let pool: Pool
    let cache: LookupCache
    let configuration: Configuration
    let store = LookupStore()
    private let queue = Mutex<[Pending]>([])
    private let wake = NSConditionBox()
    private let running = Atomic<Bool>(false)
    private let threads: ThreadGroup
    /// Statements sent and lookups answered by them (for tests and metrics).
    let statements = Atomic<Int>(0)
    let lookups = Atomic<Int>(0)

    public let name = "lookup readers"
    /// The HTTP server stops first (its drain answers what is still waiting), so the readers usually find
    /// an empty queue and end at once; lookups still queued when this has passed are answered 503 and a
    /// read in progress ends on its own (bounded by the pool's acquire timeout and the statement timeout).
    public let stopBudget: Duration = .seconds(1)

    public init(pool: Pool, cache: LookupCache, configuration: Configuration = Configuration(), heartbeats: Heartbeats? = nil) {
        self.pool = pool
        self.cache = cache
        self.configuration = configuration
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    /// Lookups queued since the start, whether read yet or not (for tests).
    let submitted = Atomic<Int>(0)

    /// False before `start()` and after `stop()`: callers then read the database themselves.
    public var isRunning: Bool { running.load(ordering: .acquiring) }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for index in 0..<max(1, configuration.readers) {
            threads.spawn("afterimage-lookup-\(index)") { [self] heartbeat in readLoop(heartbeat) }
        }
    }

    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        if !threads.join(timeout: stopBudget) {
            let left = queue.withLock { queued in
                defer { queued = [] }
                return queued
            }
            for pending in left { pending.completion(.failure(Stopped())) }
        }
    }

    /// The batcher is not running (not started yet, or stopping): "retry later".
    struct Stopped: Error, CustomStringConvertible {
        var description: String { "lookups are not being read (the daemon is starting or stopping)" }
    }

    /// Queues a lookup and returns at once; `completion` is called exactly once, on a reader thread, with
    /// the prediction (already offered to the cache) or nil, or with the error. Nothing here blocks, so the
    /// HTTP event thread calls it. When the batcher is not running, `completion` is called here, at once,
    /// with `Stopped`; before the database is ready, with the pool's own "not ready" error.
    public func submit(_ key: LookupCache.Key, completion: @escaping Completion) {
        guard running.load(ordering: .acquiring) else {
            completion(.failure(Stopped()))
            return
        }
        guard pool.isAdmitting else {
            completion(.failure(PQError(code: .connectionFailed, message: "the database is not ready yet")))
            return
        }
        queue.withLock { $0.append(Pending(key: key, completion: completion)) }
        submitted.add(1, ordering: .relaxed)
        wake.broadcast()
    }

    private func readLoop(_ heartbeat: Heartbeat) {
        while true {
            heartbeat.beat()
            let batch = queue.withLock { queued -> [Pending] in
                let take = Array(queued.prefix(configuration.maxBatch))
                queued.removeFirst(take.count)
                return take
            }
            if batch.isEmpty {
                if !running.load(ordering: .acquiring) { return }
                wake.wait(timeout: 0.5)
                continue
            }
            read(batch)
        }
    }

    /// One statement per provider in the batch (almost always one); each lookup answered from its result.
    private func read(_ batch: [Pending]) {
        var byProvider: [String: [Pending]] = [:]
        for pending in batch { byProvider[pending.key.provider, default: []].append(pending) }
        for (provider, group) in byProvider {
            let ids = Array(Set(group.map(\.key.id)))
            let generation = cache.generation()  // before the read: a concurrent invalidation wins
            let result = Result {
                try pool.withConnection { try store.predictions(provider: provider, ids: ids, on: $0) }
            }
            statements.add(1, ordering: .relaxed)
            lookups.add(group.count, ordering: .relaxed)
            switch result {
            case .success(let views):
                for view in views.values { cache.store(view, readAt: generation) }
                for pending in group { pending.completion(.success(views[pending.key.id])) }
            case .failure(let error):
                for pending in group { pending.completion(.failure(error)) }
            }
        }
    }
}
