import CCurl
import Synchronization

/// One easy handle reused across requests, so connections (and TLS sessions, and the DNS cache) are kept
/// alive between them: an S3 multipart upload or a worker's next download skips the handshake.
///
/// Connections kept alive were vetted by the address policy in force when they were opened; a guarded
/// request never reuses one opened without a policy. Use one policy per session.
///
/// A transfer holds the session's lock from start to end: concurrent callers wait their turn, so give
/// each worker thread its own session. Do not call `perform` on the same session from inside a sink.
public final class CurlSession: Sendable {
    private let handle = Mutex(EasyHandle())

    /// Largest body `perform(_:options:)` collects when `options.maxBytes` is nil.
    public static let defaultCollectLimit: Int64 = 16 << 20
    /// Largest non-2xx body kept by the streaming `perform` (an error page or an S3 XML error).
    public static let errorBodyLimit = 64 << 10

    public init() {}

    deinit {
        handle.withLock { $0.cleanup() }
    }

    /// Streams a 2xx response body into `sink` as it arrives, so memory stays flat whatever the size.
    /// A throwing sink aborts the transfer (`.sinkFailed`, its error in `CurlError.sinkError`).
    ///
    /// Non-2xx responses are returned, not thrown, and their body does NOT reach the sink: it goes to
    /// `CurlResponse.body`, cut at `errorBodyLimit` bytes (`bodyTruncated`), so a 404 page never lands
    /// in a spool file. `options.maxBytes` bounds 2xx bodies only.
    public func perform(
        _ request: CurlRequest, options: CurlOptions,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(CurlError) -> CurlResponse {
        try withoutActuallyEscaping(sink) { (escapable) throws(CurlError) -> CurlResponse in
            try handle.withLock { (easy) throws(CurlError) -> CurlResponse in
                try Self.run(
                    &easy, request, options, .sink(escapable),
                    successLimit: options.maxBytes, otherLimit: Self.errorBodyLimit)
            }
        }
    }

    /// Collects the body in memory: a 2xx body larger than `options.maxBytes` (or `defaultCollectLimit`
    /// when nil) fails with `.tooLarge`; other statuses are returned with their body cut at that size.
    public func perform(_ request: CurlRequest, options: CurlOptions) throws(CurlError) -> CurlResponse {
        let limit = options.maxBytes ?? Self.defaultCollectLimit
        return try handle.withLock { (easy) throws(CurlError) -> CurlResponse in
            try Self.run(
                &easy, request, options, .collect,
                successLimit: limit, otherLimit: Int(clamping: limit))
        }
    }

    // MARK: - Redirects

    private static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    private static func run(
        _ easy: inout EasyHandle, _ request: CurlRequest, _ options: CurlOptions,
        _ destination: BodyDestination, successLimit: Int64?, otherLimit: Int
    ) throws(CurlError) -> CurlResponse {
        let handle = try easy.get(guarded: options.addressPolicy != nil)
        let deadline = options.totalTimeout.map { ContinuousClock.now + $0 }
        var current = request
        var url = try ParsedURL(request.url)
        try checkProtocol(url, options, what: "URL")
        var hops = 0
        while true {
            var sent = current
            if let destinationHeaders = options.destinationHeaders { sent.headers += destinationHeaders(url.host) }
            let hop = try HopRunner(
                handle: handle, request: sent, url: url, options: options, deadline: deadline,
                destination: destination, successLimit: successLimit, otherLimit: otherLimit
            ).run()
            guard options.maxRedirects > 0, redirectStatuses.contains(hop.status), let target = hop.redirectURL else {
                return CurlResponse(
                    status: hop.status, headers: HTTPHeaders(hop.headers), body: hop.body,
                    effectiveURL: hop.effectiveURL, bytesReceived: hop.bytesReceived,
                    bodyTruncated: hop.bodyTruncated, redirectCount: hops)
            }
            guard hops < options.maxRedirects else {
                throw CurlError(.tooManyRedirects, "\(current.method) \(url.redacted): more than \(options.maxRedirects) redirects")
            }
            let next = try ParsedURL(target)
            try checkProtocol(next, options, what: "redirect target")
            if let policy = options.redirectPolicy, !policy(target) {
                throw CurlError(.disallowedRedirect, "\(current.method) \(url.redacted): redirect to \(next.redacted) refused by policy")
            }
            current = redirected(current, status: hop.status, from: url, to: next, target: target)
            url = next
            hops += 1
        }
    }

    private static func checkProtocol(_ url: ParsedURL, _ options: CurlOptions, what: String) throws(CurlError) {
        guard options.allowedProtocols.contains(where: { $0.lowercased() == url.scheme }) else {
            throw CurlError(.protocolNotAllowed, "\(what) \(url.redacted): scheme \"\(url.scheme)\" is not in \(options.allowedProtocols)")
        }
    }

    /// The request for the next hop, the way browsers and libcurl do it: 303 (and 301/302 after a POST)
    /// become a GET without a body; credentials are not carried to another origin.
    private static func redirected(
        _ request: CurlRequest, status: Int, from: ParsedURL, to: ParsedURL,
        target: String
    ) -> CurlRequest {
        var next = request
        next.url = target
        if (status == 303 && request.method != "HEAD") || ((status == 301 || status == 302) && request.method == "POST") {
            next.method = "GET"
            next.body = .none
            next.headers.removeAll { ["content-type", "content-length", "content-encoding"].contains($0.0.lowercased()) }
        }
        if from.origin != to.origin {
            next.headers.removeAll { ["authorization", "proxy-authorization", "cookie", "host"].contains($0.0.lowercased()) }
        }
        return next
    }
}
