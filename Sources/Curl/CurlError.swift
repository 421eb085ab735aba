/// Why a transfer did not produce a response. Non-2xx statuses are not errors (callers decide what a
/// 404 or a 503 means), so every code here means "no usable answer from the server".
///
/// `description` and `message` never contain request headers (an `Authorization` token), query strings
/// (presigned signatures) or URL user info: only the method, scheme, host, port and path.
public struct CurlError: Error, CustomStringConvertible {
    /// What went wrong, stable for callers to match on (`error.code == .tooLarge`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The body grew past `CurlOptions.maxBytes` (or its Content-Length announced it would).
        public static let tooLarge = Code("tooLarge")
        /// `CurlOptions.addressPolicy` refused every address the host resolved to; nothing was connected.
        public static let blockedAddress = Code("blockedAddress")
        /// `CurlOptions.redirectPolicy` refused a redirect target; no request was sent to it.
        public static let disallowedRedirect = Code("disallowedRedirect")
        /// More than `CurlOptions.maxRedirects` redirects in a row.
        public static let tooManyRedirects = Code("tooManyRedirects")
        /// The total timeout, the connect timeout or the low-speed limit fired.
        public static let timeout = Code("timeout")
        /// No TCP (or TLS) connection could be made to an allowed address.
        public static let connectFailed = Code("connectFailed")
        /// The host name did not resolve.
        public static let resolveFailed = Code("resolveFailed")
        /// The URL (or a redirect target) uses a scheme outside `CurlOptions.allowedProtocols`.
        public static let protocolNotAllowed = Code("protocolNotAllowed")
        /// `CurlOptions.shouldAbort` asked to stop.
        public static let aborted = Code("aborted")
        /// The caller's sink threw; its error is in `CurlError.sinkError`.
        public static let sinkFailed = Code("sinkFailed")
        /// The request body could not be read (missing file, range past its end, read error).
        public static let bodySourceFailed = Code("bodySourceFailed")
        /// The server closed the connection before sending the body its Content-Length announced.
        public static let incompleteBody = Code("incompleteBody")
        /// The URL could not be parsed.
        public static let invalidURL = Code("invalidURL")
        /// The request itself is malformed (bad method or header syntax, a HEAD with a body).
        public static let invalidRequest = Code("invalidRequest")
        /// Any other libcurl failure (TLS, send/receive errors, protocol errors); `curlCode` says which.
        public static func transport(_ curlCode: Int32) -> Code { Code("transport(\(curlCode))") }

        /// Failures worth retrying later: the network or the server, not the request or the policy.
        public var isTransient: Bool {
            switch self {
            case .timeout, .connectFailed, .resolveFailed, .incompleteBody: return true
            default: return name.hasPrefix("transport(")
            }
        }
    }

    public let code: Code
    /// Human-readable detail, safe to log (see the type's comment).
    public let message: String
    /// The libcurl result code when libcurl reported the failure.
    public let curlCode: Int32?
    /// The error the sink threw, for `.sinkFailed` (e.g. a full disk while spooling).
    public let sinkError: (any Error)?

    public init(_ code: Code, _ message: String, curlCode: Int32? = nil, sinkError: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.curlCode = curlCode
        self.sinkError = sinkError
    }

    public var description: String {
        var text = "CurlError.\(code): \(message)"
        if let curlCode { text += " (curl \(curlCode))" }
        if let sinkError { text += "; sink: \(sinkError)" }
        return text
    }
}
