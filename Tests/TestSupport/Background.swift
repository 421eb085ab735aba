import Foundation
import Synchronization

/// Work on a thread of its own: blocking socket calls must not sit on Swift concurrency's few
/// cooperative threads (two on a two-core machine), and a test needs more in flight than that.
public final class Background<Value: Sendable>: Sendable {
    private let outcome = Mutex<Result<Value, any Error>?>(nil)

    public init(_ work: @escaping @Sendable () throws -> Value) {
        let thread = Thread { [self] in
            let result = Result { try work() }
            outcome.withLock { $0 = result }
        }
        thread.start()
    }

    public var isFinished: Bool { outcome.withLock { $0 != nil } }

    /// The work's value (or what it threw), once it is done; a failure after `timeout`.
    public func value(timeout: Duration = .seconds(15)) throws -> Value {
        try waitUntil(timeout: timeout, pollEvery: .milliseconds(10), "background work") { isFinished }
        return try outcome.withLock { $0! }.get()
    }
}
