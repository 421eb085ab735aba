import Dispatch
import Foundation
import Synchronization

/// Threads that run handlers which may block (database calls, waiting for a group commit), away from
/// libmicrohttpd's few event threads.
///
/// Why: with a thread per connection, 64 busy connections meant 64 runnable threads on two cores, and the
/// scheduler, not arrival order, decided which answer went out next (p99 ten times the mean in
/// bench/lookup). Now a few event threads do all socket work and answer what needs no waiting
/// (`Router.add(immediate:)`); the rest is handed here while its connection is suspended. Threads are
/// started as work needs them, up to `maxThreads` (the connection limit: each connection has at most one
/// request in a handler), and kept for reuse.
final class HandlerPool: Sendable {
    typealias Job = @Sendable () -> Void

    private struct State {
        var jobs: [Job] = []
        var threads = 0
        var busy = 0
        var stopping = false
    }

    let maxThreads: Int
    private let state = Mutex(State())
    /// Counts jobs not yet taken (and wake-ups for stopping threads).
    private let queued = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)

    init(maxThreads: Int) {
        self.maxThreads = max(1, maxThreads)
    }

    func submit(_ job: @escaping Job) {
        let spawn = state.withLock { state -> Bool in
            state.jobs.append(job)
            // Start a thread when every existing one is busy or already has a job waiting for it.
            guard state.threads - state.busy < state.jobs.count, state.threads < maxThreads else { return false }
            state.threads += 1
            return true
        }
        queued.signal()
        if spawn {
            let thread = Thread { [self] in work() }
            thread.name = "http-handler"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Handlers running or waiting to run.
    var pending: Int { state.withLock { $0.busy + $0.jobs.count } }

    /// Lets the threads finish what is queued and exit; returns once they have.
    func shutdown() {
        let threads = state.withLock { state -> Int in
            state.stopping = true
            return state.threads
        }
        for _ in 0..<threads { queued.signal() }
        for _ in 0..<threads { exited.wait() }
    }

    private func work() {
        while true {
            queued.wait()
            let job = state.withLock { state -> Job? in
                guard !state.jobs.isEmpty else { return nil }
                state.busy += 1
                return state.jobs.removeFirst()
            }
            guard let job else {
                if state.withLock({ $0.stopping }) {
                    exited.signal()
                    return
                }
                continue
            }
            job()
            state.withLock { $0.busy -= 1 }
        }
    }
}
