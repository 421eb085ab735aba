import Synchronization

/// Bytes of request bodies the server holds at once, across all connections (in memory or spilled to
/// disk), bounded by `HTTPServer.Configuration.maxInflightBodyBytes`.
///
/// Why: per-route limits bound one body, not the sum. Without a global bound, N concurrent clients can
/// make the server hold N times the largest route limit. A request with a `Content-Length` reserves
/// its whole declared length before its first byte is read (so admitted requests can all finish, and a
/// request that does not fit is told 503 before sending anything); a chunked one reserves as it arrives.
/// A reservation is held until the request completes.
final class BodyBudget: Sendable {
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget, or nothing when they do not fit.
    func reserve(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = used.load(ordering: .relaxed)
        while true {
            guard bytes <= limit - current else { return false }
            let (exchanged, original) = used.compareExchange(
                expected: current, desired: current + bytes, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
    }

    func release(_ bytes: Int) {
        if bytes > 0 { used.subtract(bytes, ordering: .releasing) }
    }
}
