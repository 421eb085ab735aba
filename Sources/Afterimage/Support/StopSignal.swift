import Foundation
import Synchronization

/// A component's stop flag, and the way its idle threads are woken: by a stop, or (`wake()`) because
/// there is new work. Every wait is bounded and beats the waiting thread's heartbeat.
final class StopSignal: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let condition = NSConditionBox()

    var isStopped: Bool { stopped.load(ordering: .acquiring) }

    /// Sets the flag and wakes every waiter.
    func stop() {
        stopped.store(true, ordering: .releasing)
        condition.broadcast()
    }

    /// Wakes the threads in `waitForWork` without stopping them.
    func wake() { condition.broadcast() }

    /// Waits `seconds` unless stopped first; false when stopped (before or during the wait). `wake()`
    /// does not end it: for loops that run on a period whatever else happens.
    @discardableResult
    func sleep(_ seconds: TimeInterval, heartbeat: Heartbeat? = nil) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !isStopped {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { break }
            condition.wait(timeout: min(Self.beatEvery, remaining))
            heartbeat?.beat()
        }
        return !isStopped
    }

    /// Waits up to `seconds`, until `wake()` or `stop()`; false when stopped.
    @discardableResult
    func waitForWork(_ seconds: TimeInterval, heartbeat: Heartbeat? = nil) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !isStopped {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { break }
            let woken = condition.wait(timeout: min(Self.beatEvery, remaining))
            heartbeat?.beat()
            if woken { break }
        }
        return !isStopped
    }

    /// Long waits are cut into pieces this long, so the heartbeat stays fresh.
    static let beatEvery: TimeInterval = 1
}

/// A condition idle threads wait on; broadcast wakes them all.
final class WakeSignal: Sendable {
    private let condition = NSConditionBox()

    func broadcast() { condition.broadcast() }

    /// Waits until a broadcast or `timeout`; true when woken by a broadcast.
    @discardableResult
    func wait(timeout: TimeInterval) -> Bool { condition.wait(timeout: timeout) }

    /// Waits up to `timeout`, returning early once `stopped()` holds (checked at least every 0.2 s, and on
    /// every broadcast), beating `heartbeat` meanwhile.
    func sleep(timeout: TimeInterval, heartbeat: Heartbeat? = nil, unlessStopped stopped: () -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, !stopped() {
            condition.wait(timeout: min(0.2, deadline.timeIntervalSinceNow))
            heartbeat?.beat()
        }
    }
}

/// NSCondition is thread-safe but not marked Sendable in corelibs-foundation.
final class NSConditionBox: @unchecked Sendable {
    // Safe: NSCondition is a pthread mutex + condvar pair, meant to be shared across threads; `generation`
    // is only touched with it locked.
    private let condition = NSCondition()
    private var generation = 0

    func broadcast() {
        condition.lock()
        generation &+= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for a broadcast, at most `timeout`; true when one came.
    @discardableResult
    func wait(timeout: TimeInterval) -> Bool {
        condition.lock()
        let start = generation
        let deadline = Date().addingTimeInterval(max(0, timeout))
        while generation == start, condition.wait(until: deadline) {}
        let woken = generation != start
        condition.unlock()
        return woken
    }
}
