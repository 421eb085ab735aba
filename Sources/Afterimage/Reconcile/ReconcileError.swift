import Foundation

/// Why a reconciliation pass ended early. The description names the request's path and status, never
/// the API token or a response body (a body may echo what we sent).
public struct ReconcileError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        init(_ name: String) { self.name = name }
        public var description: String { name }

        /// 401/403: the token is wrong or revoked. Retrying cannot help, so the service pauses.
        public static let unauthorized = Code("unauthorized")
        /// 429 still answered after every retry allowed.
        public static let rateLimited = Code("rate_limited")
        /// 5xx or a transport failure still there after every retry allowed.
        public static let unavailable = Code("unavailable")
        /// A status or body that is not the API we know (a redirect, a 404 on the list, HTML, no `results`).
        public static let invalidResponse = Code("invalid_response")
        /// `next` pointed away from `replicate.base_url`'s origin: we never send the token elsewhere.
        public static let foreignCursor = Code("foreign_cursor")
        public static let database = Code("database")
        /// The daemon is stopping.
        public static let stopped = Code("stopped")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "reconcile \(code): \(message)" }
}
