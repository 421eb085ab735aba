import Foundation
import Logging
import PQ
import Synchronization

/// Group commit for webhook intake. Handlers hand their delivery to the batcher and wait; a few committer
/// threads each take everything queued so far and record it in one transaction, so under load one fsync
/// and a fixed handful of statements acknowledge many webhooks. There is no artificial delay: an idle
/// committer takes a lone request at once, and batches form only while earlier commits are running.
public final class IntakeBatcher: Sendable {
    public struct Configuration: Sendable {
        /// Two, not four: on the 2-core benchmark machine fewer committers make bigger batches, and PostgreSQL's
        /// CPU per acknowledged webhook fell by about a quarter (bench/intake, CPU per ack of each process) with
        /// acks/s no lower; a batch still starts as soon as a committer is free.
        public var committers = 2
        public var maxBatch = 64
        /// How long a handler waits for its commit before answering 503. The delivery may still commit later;
        /// the provider's retry is then answered `duplicate`, so nothing is lost either way.
        public var waitTimeout: TimeInterval = 20
        public init() {}
    }

    final class Pending: @unchecked Sendable {
        // `result` is written once by a committer before `done.signal()` and read by the waiter after it.
        let delivery: ReplicateIntake.Delivery
        let done = DispatchSemaphore(value: 0)
        var result: Result<IntakeOutcome, any Error>?
        init(_ delivery: ReplicateIntake.Delivery) { self.delivery = delivery }
    }

    let intake: ReplicateIntake
    let pool: Pool
    let configuration: Configuration
    let logger: Logger
    private let queue = Mutex<[Pending]>([])
    private let wake = NSConditionBox()
    private let running = Atomic<Bool>(false)
    private let committers = DispatchGroup()

    public init(intake: ReplicateIntake, pool: Pool, configuration: Configuration = Configuration(), logger: Logger) {
        self.intake = intake
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for index in 0..<max(1, configuration.committers) {
            committers.enter()
            let thread = Thread { [self] in
                defer { committers.leave() }
                commitLoop()
            }
            thread.name = "afterimage-intake-\(index)"
            thread.start()
        }
    }

    /// Commits what is queued, then stops the committers.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wake.broadcast()
        committers.wait()
    }

    /// Records `delivery` durably, together with whatever else is waiting; blocks until committed.
    public func record(_ delivery: ReplicateIntake.Delivery) throws -> IntakeOutcome {
        guard running.load(ordering: .acquiring) else {
            return try pool.withConnection { try intake.record(delivery, on: $0) }
        }
        let pending = Pending(delivery)
        queue.withLock { $0.append(pending) }
        wake.broadcast()
        guard pending.done.wait(timeout: .now() + configuration.waitTimeout) == .success, let result = pending.result else {
            throw IntakeTimeout()
        }
        return try result.get()
    }

    struct IntakeTimeout: Error, CustomStringConvertible {
        var description: String { "the database did not commit the delivery in time" }
    }

    private func commitLoop() {
        while true {
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
            commit(batch)
        }
    }

    private func commit(_ batch: [Pending]) {
        do {
            let outcomes = try pool.withConnection { try intake.recordBatch(batch.map(\.delivery), on: $0) }
            for (pending, outcome) in zip(batch, outcomes) {
                pending.result = .success(outcome)
                pending.done.signal()
            }
        } catch {
            if Self.isUnavailable(error) {
                // The database is away: recording each alone would only wait longer. Nothing was committed.
                for pending in batch {
                    pending.result = .failure(error)
                    pending.done.signal()
                }
                return
            }
            // Something in the batch made the transaction fail: record each on its own so one bad delivery
            // cannot fail its neighbours.
            if batch.count > 1 {
                logger.warning("batch commit failed; recording its deliveries one by one", metadata: ["size": "\(batch.count)", "error": "\(error)"])
            }
            for pending in batch {
                pending.result = Result { try recordAlone(pending.delivery) }
                pending.done.signal()
            }
        }
    }

    /// One delivery in its own transaction. A body PostgreSQL refuses to interpret (well-formed JSON that
    /// jsonb cannot hold) is kept raw and answered as unparseable, never turned into a 503 the provider
    /// would retry for ever.
    private func recordAlone(_ delivery: ReplicateIntake.Delivery) throws -> IntakeOutcome {
        do {
            return try pool.withConnection { try intake.record(delivery, on: $0) }
        } catch let error as PQError where Self.isDataError(error) {
            return try pool.withConnection {
                try intake.recordRejected(delivery, reason: "the database refused a value in it (\(error.message))", on: $0)
            }
        }
    }

    /// SQLSTATE class 22 (data exception): the delivery's content, not the database, is the problem.
    static func isDataError(_ error: PQError) -> Bool { error.sqlState?.hasPrefix("22") ?? false }

    /// Errors that say the database is away (retrying each delivery alone would only wait longer).
    static func isUnavailable(_ error: any Error) -> Bool {
        guard let error = error as? PQError else { return false }
        return [.connectionFailed, .connectionLost, .poolTimeout, .poolClosed].contains(error.code)
    }
}
