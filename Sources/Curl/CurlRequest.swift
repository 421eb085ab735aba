/// What to upload. Bodies are described, not loaded: a file range is read piecewise while it is sent,
/// so an S3 multipart part of hundreds of MiB never sits in memory.
public enum RequestBody: Sendable {
    case none
    case bytes([UInt8])
    /// `length` bytes of the file at `path`, starting at `offset` (one multipart part of a spool file).
    case file(path: String, offset: Int64 = 0, length: Int64)

    var isEmpty: Bool {
        if case .none = self { return true }
        return false
    }
}

/// One HTTP request. Headers are sent exactly as given (S3 signatures cover them), in order.
public struct CurlRequest: Sendable {
    public var method: String = "GET"
    public var url: String
    public var headers: [(String, String)] = []
    public var body: RequestBody = .none

    public init(method: String = "GET", url: String, headers: [(String, String)] = [], body: RequestBody = .none) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// The final response after any redirects we followed.
public struct CurlResponse: Sendable {
    public let status: Int
    /// Headers of the final response only (not of 100-continue or of redirects).
    public let headers: HTTPHeaders
    /// The collected body. With a streaming sink: empty for 2xx (the bytes went to the sink), and the
    /// first bytes of the error page otherwise (see `CurlSession.perform(_:options:sink:)`).
    public let body: [UInt8]
    /// The URL of the last hop, after redirects. It keeps its query string (which may be a presigned
    /// signature): do not log it as is.
    public let effectiveURL: String
    /// Body bytes received from the final response, including those handed to a sink.
    public let bytesReceived: Int64
    /// True when `body` holds only the first part of a non-2xx body (the rest was not read).
    public let bodyTruncated: Bool
    /// How many redirects were followed to get here.
    public let redirectCount: Int

    public init(
        status: Int, headers: HTTPHeaders, body: [UInt8], effectiveURL: String, bytesReceived: Int64,
        bodyTruncated: Bool = false, redirectCount: Int = 0
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.effectiveURL = effectiveURL
        self.bytesReceived = bytesReceived
        self.bodyTruncated = bodyTruncated
        self.redirectCount = redirectCount
    }

    /// 200...299: the only statuses whose body goes to a streaming sink.
    public var isSuccess: Bool { (200...299).contains(status) }
}
