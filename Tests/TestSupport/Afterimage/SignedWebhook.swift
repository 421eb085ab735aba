import Afterimage
import Curl
import Foundation

/// A webhook as a provider sends it: the body, and Standard Webhooks headers signed with the secret.
public struct SignedWebhook: Sendable {
    public var body: [UInt8]
    public var id: String
    public var timestamp: Int64
    public var signature: String
    public var names: StandardWebhooksVerifier.HeaderNames

    /// Signs `body` now; `id` is a fresh `msg_…` unless given.
    public init(
        _ body: [UInt8], secret: String, id: String = "msg_\(UUID().uuidString)",
        timestamp: Int64 = Int64(Date().timeIntervalSince1970), names: StandardWebhooksVerifier.HeaderNames = .standard
    ) {
        self.body = body
        self.id = id
        self.timestamp = timestamp
        self.names = names
        signature = StandardWebhooksVerifier.sign(secret: secret, id: id, timestamp: timestamp, body: body)
    }

    /// The signature headers (and a JSON Content-Type).
    public var headers: [(String, String)] {
        [("Content-Type", "application/json"), (names.id, id), (names.timestamp, String(timestamp)), (names.signature, signature)]
    }

    /// POSTs it to a daemon or server on 127.0.0.1:`port`; `tamper` changes the body after signing.
    public func post(
        port: Int, route: String = "/v1/webhooks/replicate", tamper: Bool = false,
        timeout: Duration = .seconds(30)
    ) throws -> CurlResponse {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = timeout
        return try CurlSession().perform(
            CurlRequest(
                method: "POST", url: "http://127.0.0.1:\(port)\(route)", headers: headers,
                body: .bytes(tamper ? body + Array(" ".utf8) : body)), options: options)
    }
}
