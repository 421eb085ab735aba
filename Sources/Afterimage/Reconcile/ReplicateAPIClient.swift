import Curl
import Foundation

/// The two Replicate endpoints reconciliation reads (`GET /v1/predictions`, `GET /v1/predictions/{id}`),
/// with the manners the API asks for: 429 waits `Retry-After`, 5xx and transport failures back off,
/// 401/403 stop at once (retrying a bad token only earns more 401s).
///
/// `replicate.base_url` is configuration, not an untrusted URL, so no SSRF guard applies; but the token
/// is only ever sent to that origin: a `next` cursor pointing anywhere else ends the pass.
public struct ReplicateAPIClient: Sendable {
    public struct Configuration: Sendable {
        public var baseURL: String
        /// `replicate.api_token`, read for every request: the daemon passes the reloadable setting, so a
        /// rotation by SIGHUP reaches the next request without a restart.
        public var token: @Sendable () -> String
        /// A page of 100 predictions with their inputs is well under a MiB; this only stops a runaway.
        public var maxResponseBytes: Int64 = 32 << 20
        public var connectTimeout: Duration = .seconds(10)
        public var requestTimeout: Duration = .seconds(60)
        /// Attempts per request, the first included, before 429/5xx become the pass's error.
        public var maxAttempts = 5
        /// Longest `Retry-After` honoured; a larger one is cut to this (a pass must end some day).
        public var maxRetryAfter: TimeInterval = 300
        /// Used when a 429 has no readable `Retry-After`: Replicate's own 429 body says the limit "resets in ~30s".
        public var defaultRetryAfter: TimeInterval = 30
        public var backoffBase: TimeInterval = 1
        public var backoffCap: TimeInterval = 30

        /// A fixed token (the commands, which run once).
        public init(baseURL: String, token: String) {
            self.init(baseURL: baseURL, currentToken: { token })
        }

        public init(baseURL: String, currentToken: @escaping @Sendable () -> String) {
            self.baseURL = baseURL
            self.token = currentToken
        }
    }

    /// One prediction as the API returned it, re-serialised: the body a reconcile delivery records.
    public struct Item: Sendable {
        public let id: String?
        public let status: String?
        public let createdAt: Date?
        /// `api` or `web` (created on the website).
        public let source: String?
        public let body: [UInt8]
    }

    public struct Page: Sendable {
        public let items: [Item]
        public let next: String?
    }

    let configuration: Configuration
    let origin: Origin
    let basePath: String
    let session = CurlSession()
    /// Waits up to the given seconds; false when the caller is stopping (and the wait ended early).
    let sleep: @Sendable (TimeInterval) -> Bool
    let shouldAbort: @Sendable () -> Bool

    public init(
        configuration: Configuration,
        sleep: @escaping @Sendable (TimeInterval) -> Bool,
        shouldAbort: @escaping @Sendable () -> Bool = { false }
    ) throws(ConfigurationError) {
        guard let origin = Origin(configuration.baseURL), let components = URLComponents(string: configuration.baseURL) else {
            throw ConfigurationError(key: "replicate.base_url", "must be an http(s) URL such as https://api.replicate.com")
        }
        self.configuration = configuration
        self.origin = origin
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
        self.sleep = sleep
        self.shouldAbort = shouldAbort
    }

    /// The first page of predictions created after `createdAfter`, newest first.
    public func firstPageURL(createdAfter: Date) -> String {
        let stamp = createdAfter.rfc3339().addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", ":", "."])) ?? ""
        return "\(origin.text)\(basePath)/v1/predictions?created_after=\(stamp)"
    }

    /// One page of the list. `url` is the first page's URL or a `next` cursor from the previous page.
    public func listPage(_ url: String) throws(ReconcileError) -> Page {
        guard Origin(url) == origin else {
            throw ReconcileError(.foreignCursor, "the list's next page points outside replicate.base_url; not following it")
        }
        let response = try perform(url, what: "GET /v1/predictions", allowNotFound: false)
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
            let results = object["results"] as? [Any]
        else {
            throw ReconcileError(.invalidResponse, "GET /v1/predictions answered \(response.status) without a results list")
        }
        var items: [Item] = []
        items.reserveCapacity(results.count)
        for case let prediction as [String: Any] in results {
            items.append(Self.item(prediction))
        }
        return Page(items: items, next: object["next"] as? String)
    }

    /// One prediction, or nil when the API does not know it (404).
    public func prediction(id: String) throws(ReconcileError) -> Item? {
        let encoded = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", "_", "."])) ?? id
        let response = try perform("\(origin.text)\(basePath)/v1/predictions/\(encoded)", what: "GET /v1/predictions/{id}", allowNotFound: true)
        guard response.status != 404 else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw ReconcileError(.invalidResponse, "GET /v1/predictions/{id} answered \(response.status) without a prediction")
        }
        return Self.item(object)
    }

    static func item(_ object: [String: Any]) -> Item {
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map(Array.init) ?? []
        return Item(
            id: object["id"] as? String, status: object["status"] as? String,
            createdAt: (object["created_at"] as? String).flatMap(Date.init(rfc3339:)), source: object["source"] as? String,
            body: body)
    }

    /// GET with retries. `what` names the endpoint in errors (never the token, never the body).
    func perform(_ url: String, what: String, allowNotFound: Bool) throws(ReconcileError) -> CurlResponse {
        var options = CurlOptions()
        options.allowedProtocols = [origin.scheme]
        options.maxRedirects = 0  // Replicate does not redirect its API; a redirect would carry the token away
        options.connectTimeout = configuration.connectTimeout
        options.totalTimeout = configuration.requestTimeout
        options.maxBytes = configuration.maxResponseBytes
        options.shouldAbort = shouldAbort
        let request = CurlRequest(
            url: url,
            headers: [
                ("Authorization", "Bearer \(configuration.token())"), ("Accept", "application/json"), ("User-Agent", "afterimage-reconcile"),
            ])
        var backoff = configuration.backoffBase
        var attempt = 0
        while true {
            attempt += 1
            guard !shouldAbort() else { throw ReconcileError(.stopped, "stopping") }
            let response: CurlResponse
            do {
                response = try session.perform(request, options: options)
            } catch {
                if error.code == .aborted { throw ReconcileError(.stopped, "stopping") }
                guard attempt < configuration.maxAttempts else {
                    throw ReconcileError(.unavailable, "\(what) failed \(attempt) times; last: \(error.code)")
                }
                try wait(backoff)
                backoff = min(configuration.backoffCap, backoff * 2)
                continue
            }
            switch response.status {
            case 200...299:
                return response
            case 404 where allowNotFound:
                return response
            case 401, 403:
                throw ReconcileError(.unauthorized, "\(what) answered \(response.status): Replicate refused replicate.api_token")
            case 429:
                guard attempt < configuration.maxAttempts else {
                    throw ReconcileError(.rateLimited, "\(what) still rate limited after \(attempt) attempts")
                }
                let asked = Self.retryAfter(response.headers["Retry-After"]) ?? configuration.defaultRetryAfter
                try wait(min(max(0, asked), configuration.maxRetryAfter))
            case 500...599:
                guard attempt < configuration.maxAttempts else {
                    throw ReconcileError(.unavailable, "\(what) answered \(response.status) \(attempt) times")
                }
                try wait(backoff)
                backoff = min(configuration.backoffCap, backoff * 2)
            default:
                throw ReconcileError(.invalidResponse, "\(what) answered \(response.status)")
            }
        }
    }

    private func wait(_ seconds: TimeInterval) throws(ReconcileError) {
        guard sleep(seconds) else { throw ReconcileError(.stopped, "stopping") }
    }

    /// `Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
    static func retryAfter(_ value: String?, now: Date = Date()) -> TimeInterval? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return TimeInterval(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: value).map { $0.timeIntervalSince(now) }
    }
}

/// Scheme, host and port of a URL, default ports filled in, for "same origin" checks.
struct Origin: Equatable, Sendable {
    let scheme: String
    let host: String
    let port: Int

    init?(_ url: String) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = components.host?.lowercased(), !host.isEmpty,
            components.user == nil, components.password == nil
        else { return nil }
        self.scheme = scheme
        self.host = host
        port = components.port ?? (scheme == "https" ? 443 : 80)
    }

    /// `scheme://host:port` (IPv6 hosts bracketed).
    var text: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}
