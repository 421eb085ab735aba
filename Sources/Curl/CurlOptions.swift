/// Limits and guards for one `perform`. Everything that comes from outside (size, time, where a
/// redirect or a DNS answer points) is bounded here; the defaults suit fetching from the internet.
public struct CurlOptions: Sendable {
    /// Time allowed for DNS, TCP and TLS.
    public var connectTimeout: Duration = .seconds(10)
    /// Time allowed for the whole `perform`, redirects included; nil for none (rely on the low-speed limit).
    public var totalTimeout: Duration? = nil
    /// A transfer slower than this for `lowSpeedTime` is aborted with `.timeout`: a stalled server cannot
    /// hold a worker forever, while a slow but moving large download can still finish.
    public var lowSpeedLimitBytesPerSecond: Int = 1
    public var lowSpeedTime: Duration = .seconds(30)
    /// Redirects are followed by our code, one hop at a time, so each target is checked against
    /// `redirectPolicy`, `allowedProtocols` and `addressPolicy` before anything is sent to it.
    /// 0 means "do not follow": the 3xx response is returned as is (S3 explains wrong-region 301s in it).
    /// Past this many hops the error is `.tooManyRedirects`.
    public var maxRedirects: Int = 0
    /// Called with each redirect target URL; false ends the transfer with `.disallowedRedirect` before
    /// any request is made to it (the download allowlist of hosts lives in the caller).
    public var redirectPolicy: (@Sendable (String) -> Bool)? = nil
    /// URL schemes allowed for the request and every redirect (CURLOPT_PROTOCOLS_STR); others fail with
    /// `.protocolNotAllowed`. Tests add "http" for their local servers.
    public var allowedProtocols: [String] = ["https"]
    /// Largest 2xx body accepted, counted in the write callback as bytes arrive (CURLOPT_MAXFILESIZE
    /// does not stop a running transfer in 7.88) and checked early against Content-Length. Over it:
    /// `.tooLarge`, and the connection is dropped rather than drained.
    public var maxBytes: Int64? = nil
    /// Called for every address a host resolved to, just before the socket is opened (after DNS, so a
    /// name that resolves to 127.0.0.1 or 169.254.169.254 cannot sneak through). False: no connection is
    /// opened to it, and when no address is left the error is `.blockedAddress`.
    /// A typical guard is `{ !$0.isPrivateOrReserved }`.
    public var addressPolicy: (@Sendable (IPAddress) -> Bool)? = nil
    /// Polled from libcurl's progress callback (at least about once a second, also while stalled):
    /// true ends the transfer with `.aborted`. Lets a draining daemon stop downloads promptly.
    public var shouldAbort: (@Sendable () -> Bool)? = nil
    /// Headers chosen by where a hop goes: called with the host of the request and of every redirect
    /// target (lower-cased, as libcurl parses it) just before that hop is sent, and what it returns is
    /// added to that hop alone. A credential given this way reaches only the hosts it is returned for,
    /// whatever the redirects; one in `CurlRequest.headers` goes wherever the same origin goes.
    public var destinationHeaders: (@Sendable (_ host: String) -> [(String, String)])? = nil
    /// Sends the path exactly as given (CURLOPT_PATH_AS_IS). libcurl otherwise squashes `/../` and `/./`
    /// before sending, so a request signed over its path (S3 SigV4, whose keys may hold such segments)
    /// would reach another path than the one signed.
    public var pathAsIs = false

    public init() {}
}
