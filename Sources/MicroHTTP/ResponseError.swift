/// An error that knows its HTTP answer: a handler throws it and the router renders it, so routes write the
/// path that succeeds and throw for everything else (as Hummingbird's `HTTPResponseError` does).
///
/// The default rendering is the API's one error shape, `{"error":{"code":"…","message":"…"}}`, with
/// `headers` added (Retry-After, WWW-Authenticate, Allow). The message is fixed text plus values the
/// daemon produced: never a token, a secret or a request body.
///
/// Errors that do not conform reach the router's `unhandledError` (see `Router.init`), which by default
/// answers 500 without saying what happened. Either way nothing a handler throws can reach
/// libmicrohttpd's C frames: the server catches it on the thread that ran the handler.
public protocol ResponseError: Error {
    /// The HTTP status.
    var status: Int { get }
    /// The stable snake_case code clients branch on (`token_missing`, `prediction_not_found`): the
    /// `code` of the body. (Named apart from the typed `code` many error values already have.)
    var errorCode: String { get }
    /// A sentence for a person.
    var message: String { get }
    /// Header fields to send with the answer; none by default.
    var headers: [(String, String)] { get }
    /// The whole answer; by default `Response.error(status:code:message:headers:)`.
    var response: Response { get }
}

extension ResponseError {
    public var headers: [(String, String)] { [] }

    public var response: Response {
        .error(status: status, code: errorCode, message: message, headers: headers)
    }
}

/// A `ResponseError` for answers that need no type of their own (the server's 404, 405, 413, 503).
public struct HTTPError: ResponseError, Sendable, CustomStringConvertible {
    public let status: Int
    public let errorCode: String
    public let message: String
    public let headers: [(String, String)]

    public init(status: Int, code: String, message: String, headers: [(String, String)] = []) {
        self.status = status
        self.errorCode = code
        self.message = message
        self.headers = headers
    }

    public var description: String { "\(status) \(errorCode): \(message)" }
}
