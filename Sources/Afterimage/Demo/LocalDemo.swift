import Crypto
import Curl
import Foundation
import Primitives

/// `afterimage demo`: the whole path once, against a running daemon, as a provider and an app would
/// use it. Sends a signed Replicate webhook carrying `DemoPrediction`, waits until its output is stored,
/// reads the lookup, fetches the presigned URL and checks the bytes, and looks for the console.
///
/// It is a client of the daemon's public HTTP API only (no database, no bucket credentials): what works
/// here works for any app.
public struct LocalDemo: Sendable {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Code: String, Sendable {
            /// Nothing answers at the daemon's address.
            case notRunning = "daemon_not_running"
            /// The daemon answers but is not ready (database or storage), or answered something unexpected.
            case notReady = "daemon_not_ready"
            case webhookRefused = "webhook_refused"
            case lookupRefused = "lookup_refused"
            /// The output failed or expired, or was not stored in time.
            case notStored = "not_stored"
            case presignedURL = "presigned_url"
        }
        public let code: Code
        public let message: String
        public var description: String { message }
    }

    public struct Outcome: Sendable {
        public let predictionID: String
        public let webhookStatus: Int
        public let storedAfter: Duration
        /// The lookup answer as the daemon sent it.
        public let lookup: [UInt8]
        public let presignedURL: String
        public let presignedURLExpiresAt: String?
        public let fetchedBytes: Int
        /// `GET /ui/` answered 200.
        public let consoleAvailable: Bool
    }

    public let baseURL: String
    public let webhookSecret: String
    public let apiToken: String
    public let timeout: Duration
    let session = CurlSession()

    public init(baseURL: String, webhookSecret: String, apiToken: String, timeout: Duration) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.webhookSecret = webhookSecret
        self.apiToken = apiToken
        self.timeout = timeout
    }

    /// The daemon's own address from its settings: loopback when it listens on every address.
    public static func baseURL(for http: Settings.HTTP) -> String {
        var host = http.host
        if host == "0.0.0.0" || host.isEmpty { host = "127.0.0.1" }
        if host == "::" || host == "[::]" { host = "::1" }
        if host.contains(":"), !host.hasPrefix("[") { host = "[\(host)]" }
        return "http://\(host):\(http.port)"
    }

    /// Runs the demo; `progress` gets one line per step as it happens.
    public func run(progress: (String) -> Void) throws(Failure) -> Outcome {
        try checkReady()
        let prediction = DemoPrediction()
        progress(
            "sending a signed Replicate webhook for prediction \(prediction.id) (one 48x48 PNG as a data: URI) to \(baseURL)/v1/webhooks/replicate")
        let webhook = try send(prediction)
        progress("the daemon answered \(webhook.status) \(String(decoding: webhook.body, as: UTF8.self))")

        let started = ContinuousClock.now
        let (lookup, asset) = try waitUntilStored(prediction.id)
        let storedAfter = ContinuousClock.now - started
        guard let url = asset["url"] as? String else {
            throw Failure(code: .notStored, message: "the lookup shows output 0 stored but without a presigned url")
        }
        progress("output 0 stored as \(asset["key"] as? String ?? "?"); fetching its presigned URL to check the bytes")
        let fetched = try fetch(url, expectedSHA256: asset["sha256"] as? String)
        return Outcome(
            predictionID: prediction.id, webhookStatus: webhook.status, storedAfter: storedAfter, lookup: lookup,
            presignedURL: url, presignedURLExpiresAt: asset["url_expires_at"] as? String,
            fetchedBytes: fetched, consoleAvailable: get("/ui/")?.status == 200)
    }

    /// `/readyz` must answer 200: anything else would make the demo fail later with a less helpful message.
    func checkReady() throws(Failure) {
        let response: CurlResponse
        do {
            response = try session.perform(CurlRequest(url: baseURL + "/readyz"), options: options(timeout: .seconds(10)))
        } catch {
            throw Failure(
                code: .notRunning,
                message: """
                    no daemon answers on \(baseURL) (\(error.code)). Start it first: `make run` in another terminal \
                    (or `afterimage serve --config FILE`), and wait for "listening"
                    """)
        }
        guard response.status == 200 else {
            throw Failure(
                code: .notReady,
                message: "\(baseURL)/readyz answered \(response.status): \(Self.text(response.body)); the daemon is not ready (database or storage)")
        }
    }

    func send(_ prediction: DemoPrediction) throws(Failure) -> CurlResponse {
        let request = CurlRequest(
            method: "POST", url: baseURL + "/v1/webhooks/replicate",
            headers: prediction.headers(secret: webhookSecret), body: .bytes(prediction.body))
        let response: CurlResponse
        do {
            response = try session.perform(request, options: options(timeout: .seconds(30)))
        } catch {
            throw Failure(code: .notRunning, message: "the webhook could not be sent to \(baseURL): \(error.code)")
        }
        switch response.status {
        case 200:
            let answer = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            if let assets = answer?["assets"] as? Int, assets == 0 {
                throw Failure(
                    code: .webhookRefused,
                    message: """
                        the daemon accepted the webhook but found no output in it: this build does not archive data: \
                        outputs (\(Self.text(response.body)))
                        """)
            }
            return response
        case 401:
            throw Failure(
                code: .webhookRefused,
                message: """
                    the daemon refused the webhook's signature (401): the daemon and this command read different \
                    replicate.webhook_secret values (give both the same --config)
                    """)
        default:
            throw Failure(code: .webhookRefused, message: "the webhook was answered \(response.status): \(Self.text(response.body))")
        }
    }

    /// Polls the lookup until output 0 is stored (or failed/expired, or the timeout passes).
    func waitUntilStored(_ id: String) throws(Failure) -> ([UInt8], [String: Any]) {
        let deadline = ContinuousClock.now + timeout
        var lastState = "unknown"
        while true {
            let response: CurlResponse
            do {
                response = try session.perform(
                    CurlRequest(url: "\(baseURL)/v1/predictions/replicate/\(id)", headers: [("Authorization", "Bearer \(apiToken)")]),
                    options: options(timeout: .seconds(10)))
            } catch {
                throw Failure(code: .notRunning, message: "the lookup could not reach \(baseURL): \(error.code)")
            }
            switch response.status {
            case 200:
                let answer = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
                let assets = answer?["assets"] as? [[String: Any]] ?? []
                if let first = assets.first(where: { $0["index"] as? Int == 0 }) {
                    lastState = first["state"] as? String ?? "unknown"
                    switch lastState {
                    case "stored":
                        return (response.body, first)
                    case "failed", "expired":
                        throw Failure(
                            code: .notStored, message: "output 0 is \(lastState): \(first["failure_reason"] as? String ?? "no reason given")")
                    default:
                        break
                    }
                }
            case 401:
                throw Failure(
                    code: .lookupRefused,
                    message: """
                        the lookup refused the API token (401): the daemon and this command read different api.tokens \
                        (give both the same --config)
                        """)
            case 404, 503:
                break  // not committed yet, or the database is briefly unavailable: ask again
            default:
                throw Failure(code: .lookupRefused, message: "the lookup answered \(response.status): \(Self.text(response.body))")
            }
            guard ContinuousClock.now < deadline else {
                throw Failure(code: .notStored, message: "output 0 was still \(lastState) after \(timeout); see the daemon's log")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// GETs the presigned URL the way `curl` would and checks the bytes against the stored SHA-256 and the PNG sent.
    func fetch(_ url: String, expectedSHA256: String?) throws(Failure) -> Int {
        let response: CurlResponse
        do {
            response = try session.perform(CurlRequest(url: url), options: options(timeout: .seconds(30)))
        } catch {
            throw Failure(code: .presignedURL, message: "the presigned URL could not be fetched: \(error.code)")
        }
        guard response.status == 200 else {
            throw Failure(code: .presignedURL, message: "the presigned URL answered \(response.status): \(Self.text(response.body))")
        }
        let digest = Hex.encode(SHA256.hash(data: response.body))
        guard digest == DemoPrediction.pngSHA256, expectedSHA256 == nil || expectedSHA256 == digest else {
            throw Failure(code: .presignedURL, message: "the presigned URL answered bytes that are not the PNG sent (sha256 \(digest))")
        }
        return response.body.count
    }

    func get(_ path: String) -> CurlResponse? {
        try? session.perform(CurlRequest(url: baseURL + path), options: options(timeout: .seconds(10)))
    }

    /// Loopback (or wherever the operator pointed `--url`): plain HTTP allowed, no redirects followed.
    func options(timeout: Duration) -> CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = ["http", "https"]
        options.connectTimeout = .seconds(5)
        options.totalTimeout = timeout
        options.maxBytes = 16 << 20
        return options
    }

    /// An answer's body for a message: one line, at most 300 characters.
    static func text(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(300), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
        return text.isEmpty ? "(empty body)" : text
    }
}
