import Logging
import MicroHTTP
import PQ

/// The daemon's last word on an error a route threw that is not a `ResponseError`: a database outage is
/// the client's cue to retry (503 + Retry-After, since nothing was done); anything else is a 500 that says
/// nothing of what went wrong. Both are logged with the path, never with headers or the body.
enum UnhandledErrors {
    static func renderer(logger: Logger) -> UnhandledErrorRenderer {
        { error, head in
            if let error = error as? PQError, error.isUnavailable {
                logger.error("request failed: database unavailable", metadata: ["path": "\(head.path)", "error": "\(error)"])
                return .error(
                    status: 503, code: "database_unavailable", message: "the database is unavailable; retry later",
                    headers: [("Retry-After", "5")])
            }
            logger.error("request failed", metadata: ["path": "\(head.path)", "error": "\(error)"])
            return .error(status: 500, code: "internal_error", message: "the request failed")
        }
    }
}
