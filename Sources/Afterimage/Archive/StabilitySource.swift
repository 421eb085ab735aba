import Curl
import Foundation

/// Fetches an async Stability generation: `GET {base_url}/v2beta/results/{id}` with the API key.
/// 200 streams the bytes into the spool (with the `finish-reason` and `seed` headers); 202 means "still
/// generating" and becomes a poll later, never a counted failure; errors carry Stability's own message.
public struct StabilitySource: Sendable {
    /// `stability.api_key`; read per poll so a reload can change it.
    let apiKey: @Sendable () -> String?

    public init(apiKey: @escaping @Sendable () -> String?) { self.apiKey = apiKey }

    /// Stability's rate limit: a 429 locks the key out for 60 s.
    static let rateLimitSeconds: TimeInterval = 60
    static let maxMessageLength = 300

    struct Fetched {
        let path: String
        let sha256: String
        let size: Int64
        let contentType: String?
        let finishReason: String?
        let seed: Int64?
    }

    func fetch(_ job: ArchiveJob, spool: Spool, session: CurlSession, policy: FetchPolicy,
               shouldAbort: @escaping @Sendable () -> Bool, now: Date = Date()) throws -> Fetched {
        guard let key = apiKey(), !key.isEmpty else {
            throw ArchiveError(.transport, "stability.api_key is not configured; cannot fetch the generation")
        }
        if let refusal = policy.refusal(for: job.sourceURL) { throw ArchiveError(.disallowedURL, refusal) }
        var options = policy.curlOptions()
        options.shouldAbort = shouldAbort
        // The key must never follow a redirect to another host, and the results endpoint does not redirect.
        options.maxRedirects = 0
        let writer = try spool.writer(assetID: job.assetID)
        let response: CurlResponse
        do {
            response = try session.perform(CurlRequest(url: job.sourceURL, headers: [("Authorization", "Bearer \(key)"), ("Accept", "*/*")]),
                                           options: options) { bytes in try writer.write(bytes) }
        } catch {
            writer.discard()
            throw Archiver.mapCurl(error, maxBytes: policy.maxBytes)
        }
        switch response.status {
        case 200:
            let (path, sha256) = try writer.finish(durable: false)
            return Fetched(path: path, sha256: sha256, size: writer.size, contentType: response.headers["content-type"],
                           finishReason: response.headers["finish-reason"].map { String($0.prefix(64)) },
                           seed: response.headers["seed"].flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) })
        case 202:
            writer.discard()
            throw ArchiveError(.notReady, "the generation is still in progress", status: 202,
                               retryAfter: Self.retryAfter(response.headers["retry-after"]) ?? Self.pollDelay(job: job, now: now))
        default:
            writer.discard()
            let message = Self.providerMessage(response.body, redacting: key)
            let retryAfter = response.status == 429 ? max(Self.retryAfter(response.headers["retry-after"]) ?? 0, Self.rateLimitSeconds)
                                                    : Self.retryAfter(response.headers["retry-after"])
            throw ArchiveError(.sourceStatus, "Stability answered \(response.status)\(message.map { ": \($0)" } ?? "")",
                               status: response.status, retryAfter: retryAfter)
        }
    }

    /// Without a Retry-After: poll at about a tenth of the time the generation has taken so far, between
    /// 3 s and 60 s — quick for an image, gentle for a long video.
    static func pollDelay(job: ArchiveJob, now: Date) -> TimeInterval {
        guard let deadline = job.deadline else { return 5 }
        let elapsed = now.timeIntervalSince(deadline.addingTimeInterval(-StabilityIntake.resultRetention))
        return min(60, max(3, elapsed / 10))
    }

    /// Delta seconds only (Stability sends those), bounded to ten minutes.
    static func retryAfter(_ value: String?) -> TimeInterval? {
        guard let value, let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 else { return nil }
        return TimeInterval(min(seconds, 600))
    }

    /// Stability's error answer is `{"id", "name", "errors": [...]}`; its messages are what an operator
    /// needs to read. Cut short, printable, and never containing the key.
    static func providerMessage(_ body: [UInt8], redacting key: String) -> String? {
        guard !body.isEmpty else { return nil }
        var text: String
        if let object = try? JSONSerialization.jsonObject(with: Data(body.prefix(16 << 10))) as? [String: Any] {
            let errors = (object["errors"] as? [Any])?.compactMap { $0 as? String } ?? []
            let name = object["name"] as? String
            text = ([name].compactMap { $0 } + errors).joined(separator: ": ")
            if text.isEmpty { text = (object["message"] as? String) ?? "" }
        } else {
            text = String(decoding: body.prefix(1024), as: UTF8.self)
        }
        if !key.isEmpty { text = text.replacingOccurrences(of: key, with: "[redacted]") }
        text = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : Character($0) }).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        return text.count > maxMessageLength ? String(text.prefix(maxMessageLength)) + "…" : text
    }
}
