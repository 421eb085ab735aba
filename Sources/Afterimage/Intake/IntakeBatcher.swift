import Foundation
import Logging
import PQ
import Synchronization

/// Group commit for webhook intake. Routes hand their delivery to the batcher and are called back after
/// COMMIT; a few committer threads each take everything queued so far and record it in one transaction, so under load one fsync
/// and a fixed handful of statements acknowledge many webhooks. There is no artificial delay: an idle
/// committer takes a lone request at once, and batches form only while earlier commits are running.
public final class IntakeBatcher: DaemonComponent {
    public struct Configuration: Sendable {
        /// Two: on the 2-core benchmark machine fewer committers make bigger batches (PostgreSQL's CPU per
        /// acknowledged webhook fell by about a quarter from four), while one leaves the machine idle during
        /// each commit (acks/s 10% lower). With every WAL flush slowed to 2 ms (bench/intake FLUSH_DELAY_US),
        /// six were far worse than one or two: concurrent batches contend on the same index pages.
        public var committers = 2
        public var maxBatch = 64
        /// How long a delivery waits for its commit before it is answered 503 (`http.intake_timeout`). The
        /// delivery may still commit later; the provider's retry is then answered `duplicate`, so nothing is
        /// lost either way.
        public var waitTimeout: TimeInterval = 10
        public init() {}
    }
    /// One delivery waiting for its commit. `finish` answers it exactly once: a committer and the
    /// timeout sweep may both try.
    final class Pending: Sendable {
        let delivery: WebhookDelivery
        let enqueuedAt = ContinuousClock.now
        private let completion: @Sendable (Result<IntakeOutcome, any Error>) -> Void
        private let finished = Atomic<Bool>(false)

        init(_ delivery: WebhookDelivery, completion: @escaping @Sendable (Result<IntakeOutcome, any Error>) -> Void) {
            self.delivery = delivery
            self.completion = completion
        }

        func finish(_ result: Result<IntakeOutcome, any Error>) {
            guard !finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
            completion(result)
        }

        var isFinished: Bool { finished.load(ordering: .acquiring) }
    }

    /// Records every provider's deliveries (a batch may mix them).
    let recorder: DeliveryRecorder
    let pool: Pool
    let configuration: Configuration
    let logger: Logger
    private let queue = Mutex<[Pending]>([])
    /// The batch each committer is recording, for the timeout sweep.
    private let committing: Mutex<[[Pending]]>
    private let wake = NSConditionBox()
    private let sweeperStop = StopSignal()
    private let running = Atomic<Bool>(false)
    private let conflictCooldown = Atomic<Int>(0)
    /// Batches whose plain INSERTs met a duplicate and were recorded again with checks (for tests).
    let conflictRetries = Atomic<Int>(0)
    private let threads: ThreadGroup

    public let name = "intake committers"
    /// What is queued when the stop begins is committed, or answered 503 once this has passed.
    public var stopBudget: Duration { .milliseconds(Int64(configuration.waitTimeout * 1000)) }

    public init(
        recorder: DeliveryRecorder, pool: Pool, configuration: Configuration = Configuration(),
        heartbeats: Heartbeats? = nil, logger: Logger
    ) {
        self.recorder = recorder
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        committing = Mutex(Array(repeating: [], count: max(1, configuration.committers)))
        threads = ThreadGroup(heartbeats: heartbeats)
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for index in 0..<max(1, configuration.committers) {
            threads.spawn("afterimage-intake-\(index)") { [self] heartbeat in commitLoop(index, heartbeat: heartbeat) }
        }
        threads.repeating("afterimage-intake-timeouts", every: min(1, configuration.waitTimeout / 4), until: sweeperStop) { [self] _ in
            answerLateDeliveries()
        }
    }

    /// Commits what is queued, then stops the committers. Past `stopBudget` whatever is still waiting is
    /// answered 503 (the provider retries) and the committers are left to end on their own.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        sweeperStop.stop()
        if !threads.join(timeout: stopBudget) {
            let waiting =
                queue.withLock { queued in
                    defer { queued = [] }
                    return queued
                }
                + committing.withLock { $0.flatMap { $0 } }
            logger.warning("intake stop deadline reached; answering what is left with 503", metadata: ["deliveries": "\(waiting.count)"])
            for pending in waiting { pending.finish(.failure(IntakeStopped())) }
        }
    }

    /// Queues `delivery` for the next group commit and returns at once; `completion` is called exactly
    /// once, on a committer thread, after COMMIT (or with the error, or with a timeout after
    /// `waitTimeout`). Nothing here blocks, so the HTTP event thread can call it: no thread waits per
    /// webhook. Before the database is ready, and when the batcher is not running, `completion` is called
    /// at once, here, with an error that means "retry later".
    public func submit(
        _ delivery: WebhookDelivery,
        completion: @escaping @Sendable (Result<IntakeOutcome, any Error>) -> Void
    ) {
        guard running.load(ordering: .acquiring) else {
            completion(.failure(IntakeStopped()))
            return
        }
        guard pool.isAdmitting else {
            completion(.failure(PQError(code: .connectionFailed, message: "the database is not ready yet")))
            return
        }
        let pending = Pending(delivery, completion: completion)
        queue.withLock { $0.append(pending) }
        wake.broadcast()
    }

    struct IntakeTimeout: Error, CustomStringConvertible {
        var description: String { "the database did not commit the delivery in time" }
    }

    /// The batcher is not running (not started yet, or stopping).
    struct IntakeStopped: Error, CustomStringConvertible {
        var description: String { "intake is not running (the daemon is starting or stopping)" }
    }

    private func commitLoop(_ index: Int, heartbeat: Heartbeat) {
        while true {
            heartbeat.beat()
            let batch = queue.withLock { pending -> [Pending] in
                let take = Array(pending.prefix(configuration.maxBatch))
                pending.removeFirst(take.count)
                return take
            }
            if batch.isEmpty {
                if !running.load(ordering: .acquiring) { return }
                wake.wait(timeout: 0.5)
                continue
            }
            committing.withLock { $0[index] = batch }
            commit(batch)
            committing.withLock { $0[index] = [] }
        }
    }

    /// Answers 503 (through `IntakeTimeout`) for deliveries waiting longer than `waitTimeout`, queued or
    /// inside a commit that hangs (a database that stopped answering). The commit may still succeed
    /// later; the provider's retry is then a duplicate, so nothing is lost either way.
    private func answerLateDeliveries() {
        let limit = Duration.milliseconds(Int64(configuration.waitTimeout * 1000))
        let now = ContinuousClock.now
        var late: [Pending] = []
        queue.withLock { queued in
            for pending in queued {
                guard now - pending.enqueuedAt > limit else { break }  // oldest first
                late.append(pending)
            }
        }
        committing.withLock { batches in
            for batch in batches { late.append(contentsOf: batch.filter { now - $0.enqueuedAt > limit }) }
        }
        for pending in late where !pending.isFinished { pending.finish(.failure(IntakeTimeout())) }
    }

    private func commit(_ batch: [Pending]) {
        do {
            let outcomes = try recordBatch(batch.map(\.delivery))
            for (pending, outcome) in zip(batch, outcomes) { pending.finish(.success(outcome)) }
        } catch {
            if (error as? PQError)?.isUnavailable ?? false {
                // The database is away: recording each alone would only wait longer. Nothing was committed.
                for pending in batch { pending.finish(.failure(error)) }
                return
            }
            // Something in the batch made the transaction fail: record each on its own so one bad delivery
            // cannot fail its neighbours.
            if batch.count > 1 {
                logger.warning("batch commit failed; recording its deliveries one by one", metadata: ["size": "\(batch.count)", "error": "\(error)"])
            }
            for pending in batch { pending.finish(Result { try recordAlone(pending.delivery) }) }
        }
    }

    /// Batches after a conflict that use the checking statements again before trying the plain ones.
    static let conflictCooldownBatches = 32

    /// Records a batch, first with plain INSERTs for deliveries and assets (a repeated webhook id or output
    /// is rare, and ON CONFLICT's arbiter-index probe was about a fifth of PostgreSQL's intake CPU). A
    /// duplicate makes that transaction fail with unique_violation, nothing of it is kept, and the batch is
    /// recorded again with ON CONFLICT; the next batches then check too for a while (a provider retrying
    /// many deliveries at once should not cost two transactions per batch).
    private func recordBatch(_ deliveries: [WebhookDelivery]) throws -> [IntakeOutcome] {
        let cooldown = conflictCooldown.load(ordering: .relaxed)
        if cooldown > 0 {
            conflictCooldown.store(cooldown - 1, ordering: .relaxed)  // a lost decrement between committers is harmless
        } else {
            do {
                return try pool.withConnection { try recorder.recordBatch(deliveries, expectingDuplicates: false, on: $0) }
            } catch let error as PQError where error.isUniqueViolation {
                conflictCooldown.store(Self.conflictCooldownBatches, ordering: .relaxed)
                conflictRetries.add(1, ordering: .relaxed)
            }
        }
        return try pool.withConnection { try recorder.recordBatch(deliveries, on: $0) }
    }

    /// One delivery in its own transaction. A body PostgreSQL refuses to interpret (well-formed JSON that
    /// jsonb cannot hold) is kept raw and answered as unparseable, never turned into a 503 the provider
    /// would retry for ever.
    private func recordAlone(_ delivery: WebhookDelivery) throws -> IntakeOutcome {
        do {
            return try pool.withConnection { try recorder.record(delivery, on: $0) }
        } catch let error as PQError where error.isDataException {
            return try pool.withConnection {
                try recorder.recordRejected(delivery, reason: "the database refused a value in it (\(error.message))", on: $0)
            }
        }
    }
}
