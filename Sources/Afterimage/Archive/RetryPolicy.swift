import Foundation

/// What to do after a failed try. Exponential backoff with jitter, never past the deadline while an earlier
/// try is still possible, and a bounded number of tries so nothing retries forever.
public struct RetryPolicy: Sendable {
    public var baseDelay: TimeInterval = 2
    public var maxDelay: TimeInterval = 300
    /// Tries for a source answering 4xx (other than 408/429) before its deadline: a URL that 404s for a
    /// while is usually not coming back, but a few tries cover eventual consistency at the provider.
    public var maxClientErrorAttempts = 5
    /// Tries for everything else (5xx, network, storage down): ~20 tries with a 5-minute cap span hours.
    public var maxAttempts = 25

    public init() {}

    public enum Decision: Equatable, Sendable {
        case retry(at: Date)
        case fail(reason: String)
        case expire(reason: String)
    }

    public func decide(
        _ error: ArchiveError, attempts: Int, deadline: Date?, now: Date = Date(),
        jitter: Double = Double.random(in: 0.75...1.25)
    ) -> Decision {
        let pastDeadline = deadline.map { now >= $0 } ?? false
        switch error.code {
        case .disallowedURL, .blockedAddress, .tooLarge, .inlineLost:
            return .fail(reason: error.message)
        case .notReady:
            // Without a status it is not the source's answer but our own wait between polls (Stability:
            // 10 s): it never expires anything, and is not pulled in before its time.
            guard error.status != nil else { return .retry(at: now.addingTimeInterval(max(0.5, error.retryAfter ?? baseDelay))) }
            // Still being generated: poll again soon. Not a failure, so no try limit applies (the
            // caller does not count it); the deadline is the limit.
            if pastDeadline { return .expire(reason: "still in progress at its deadline: \(error.message)") }
            var next = now.addingTimeInterval(max(0.5, error.retryAfter ?? baseDelay))
            if let deadline, next > deadline { next = max(now.addingTimeInterval(0.5), deadline) }
            return .retry(at: next)
        case .sourceStatus:
            let status = error.status ?? 0
            let retryable = status >= 500 || status == 408 || status == 429
            if !retryable {
                if pastDeadline && (status == 404 || status == 410 || status == 403) {
                    return .expire(reason: "the source answered \(status) after its deadline: the provider has deleted it")
                }
                if attempts >= maxClientErrorAttempts {
                    return pastDeadline
                        ? .expire(reason: "the source answered \(status) after its deadline")
                        : .fail(reason: "the source answered \(status) \(attempts) times")
                }
            }
        case .spool, .transport, .storage, .leaseLost, .aborted:
            break
        }
        if attempts >= maxAttempts {
            return pastDeadline
                ? .expire(reason: "gave up after \(attempts) tries, past the deadline: \(error.message)")
                : .fail(reason: "gave up after \(attempts) tries: \(error.message)")
        }
        var next = nextAttempt(attempts: attempts, deadline: deadline, now: now, jitter: jitter)
        // A source that says when to come back (429 Retry-After; Stability's rate limit lasts 60 s) is
        // believed: an earlier try would only be refused again.
        if let retryAfter = error.retryAfter { next = max(next, now.addingTimeInterval(retryAfter)) }
        return .retry(at: next)
    }

    /// `base * 2^(attempts-1)`, capped, with jitter; pulled in before the deadline when the deadline is near.
    public func nextAttempt(attempts: Int, deadline: Date?, now: Date, jitter: Double) -> Date {
        let exponential = min(maxDelay, baseDelay * pow(2, Double(max(0, attempts - 1))))
        var delay = exponential * jitter
        if let deadline, now < deadline {
            let margin = deadline.timeIntervalSince(now)
            // Keep at least one more try before the deadline: aim for at most half the time left.
            delay = min(delay, max(1, margin / 2))
        }
        return now.addingTimeInterval(max(0.5, delay))
    }
}
