import Foundation

/// Errors of the archive pipeline, with a code that decides what happens to the asset next (`RetryPolicy`).
/// The code's raw value is what logs and `last_error` show, snake_case like every error code on the wire.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case spool
        case disallowedURL = "disallowed_url"
        case blockedAddress = "blocked_address"
        case tooLarge = "too_large"
        case sourceStatus = "source_status"
        case transport, storage
        case leaseLost = "lease_lost"
        case aborted
        /// The source has the file but not yet (an async generation answering 202): poll again.
        case notReady = "not_ready"
        /// Inline bytes whose only copies (spool file, recorded delivery) are gone: nothing to retry.
        case inlineLost = "inline_lost"
    }
    public let code: Code
    public let message: String
    /// HTTP status from the source, when there was one.
    public var status: Int?
    /// The earliest sensible next try, in seconds (the source's Retry-After, or a poll interval).
    public var retryAfter: TimeInterval?

    public init(_ code: Code, _ message: String, status: Int? = nil, retryAfter: TimeInterval? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
