import Crypto
import Curl
import Foundation
import Glibc
import Primitives
import Synchronization

/// Fetches an async Stability generation: `GET {base_url}/v2beta/results/{id}` (Stable Audio:
/// `/v2beta/audio/results/{id}`) with an API key. 200 streams the bytes into the spool (with the
/// `finish-reason` and `seed` headers), or, when Stability answers JSON, decodes its base64 `result`
/// from the spooled answer; 202 means "still generating" and becomes a poll later, never a counted
/// failure; errors carry Stability's own message.
///
/// A result can be read only with the key that created it (any other key gets 404), so with several
/// keys a 404 is asked again with the next one before it counts; the key that answered is remembered
/// and asked first next time.
public struct StabilitySource: ResultSource {
    /// `stability.api_key`: every key a result may have been created with, read per poll so a reload
    /// can change them.
    let apiKeys: @Sendable () -> [String]
    /// The only host the keys are sent to: `stability.base_url`'s (nil: the results URL's own, for tests
    /// that poll a fake). A result recorded under another base URL is refused rather than polled with
    /// the keys.
    let keyHost: @Sendable () -> String?
    let memory = PollMemory()

    public init(apiKeys: @escaping @Sendable () -> [String], keyHost: @escaping @Sendable () -> String? = { nil }) {
        self.apiKeys = apiKeys
        self.keyHost = keyHost
    }

    /// `ResultSource`: what the archiver calls for a `result` asset.
    public func poll(
        _ job: ArchiveJob, spool: Spool, session: CurlSession, policy: FetchPolicy,
        shouldAbort: @escaping @Sendable () -> Bool
    ) throws -> FetchedResult {
        let fetched = try fetch(job, spool: spool, session: session, policy: policy, shouldAbort: shouldAbort)
        return FetchedResult(
            spooled: Spooled(path: fetched.path, sha256: fetched.sha256, size: fetched.size, contentType: fetched.contentType),
            finishReason: fetched.finishReason, seed: fetched.seed)
    }

    /// Stability's rate limit: a 429 locks the key out for 60 s.
    static let rateLimitSeconds: TimeInterval = 60
    /// No generation is polled more often than this. Stability's own clients wait 10 s between polls,
    /// and the rate limit (150 requests per 10 s per key) is shared with the app that created it.
    public static let minimumPollInterval: TimeInterval = 10
    static let maxMessageLength = 300

    struct Fetched {
        let path: String
        let sha256: String
        let size: Int64
        let contentType: String?
        let finishReason: String?
        let seed: Int64?
    }

    /// What one key's request came back with.
    enum Answer {
        case done(Fetched)
        case inProgress(retryAfter: TimeInterval?)
        case refused(status: Int, message: String?, retryAfter: TimeInterval?)
    }

    func fetch(
        _ job: ArchiveJob, spool: Spool, session: CurlSession, policy: FetchPolicy,
        shouldAbort: @escaping @Sendable () -> Bool, now: Date = Date()
    ) throws -> Fetched {
        let keys = Self.distinct(apiKeys())
        guard !keys.isEmpty else {
            throw ArchiveError(.transport, "stability.api_key is not configured; cannot fetch the generation")
        }
        if let refusal = policy.refusal(for: job.sourceURL) { throw ArchiveError(.disallowedURL, refusal) }
        if let host = keyHost(), URL(string: job.sourceURL)?.host?.lowercased() != host.lowercased() {
            throw ArchiveError(.disallowedURL, "the result is not at stability.base_url's host (\(host)), the only one the API keys are sent to")
        }
        if let wait = memory.wait(before: job.sourceURL, now: now) {
            throw ArchiveError(
                .notReady, "polled less than \(Int(Self.minimumPollInterval)) s ago; waiting before the next poll",
                retryAfter: wait)
        }
        // Marked before the requests (a concurrent claim waits) and again after them: the interval runs
        // from the last request of a round, however many keys it took.
        memory.polled(job.sourceURL, now: now)
        let started = Date()
        defer { memory.polled(job.sourceURL, now: now.addingTimeInterval(Date().timeIntervalSince(started))) }
        let kind = StabilityGenerationKind(resultsURL: job.sourceURL)
        var refusals: [(status: Int, message: String?)] = []
        do {
            for key in memory.order(keys, for: job.sourceURL) {
                switch try poll(job, key: key, keys: keys, kind: kind, spool: spool, session: session, policy: policy, shouldAbort: shouldAbort) {
                case .done(let fetched):
                    memory.remember(owner: key, of: job.sourceURL)
                    return fetched
                case .inProgress(let retryAfter):
                    memory.remember(owner: key, of: job.sourceURL)
                    throw ArchiveError(
                        .notReady, "the generation is still in progress", status: 202,
                        retryAfter: retryAfter ?? Self.pollDelay(job: job, now: now))
                case .refused(let status, let message, _) where status == 404 || status == 401:
                    // Not this key's result (404), or a key that no longer works (401): the next key may
                    // own it. Only when every key says so does it count.
                    refusals.append((status, message))
                case .refused(let status, let message, let retryAfter):
                    throw ArchiveError(
                        .sourceStatus, "Stability answered \(status)\(message.map { ": \($0)" } ?? "")",
                        status: status,
                        retryAfter: status == 429 ? max(retryAfter ?? 0, Self.rateLimitSeconds) : retryAfter)
                }
            }
            throw Self.everyKeyRefused(refusals)
        } catch var error as ArchiveError {
            // Whatever went wrong, the next request for this generation waits the poll interval too.
            error.retryAfter = max(error.retryAfter ?? 0, Self.minimumPollInterval)
            throw error
        }
    }

    /// One request with one key. The 2xx body streams into the asset's spool file.
    func poll(
        _ job: ArchiveJob, key: String, keys: [String], kind: StabilityGenerationKind, spool: Spool, session: CurlSession,
        policy: FetchPolicy, shouldAbort: @escaping @Sendable () -> Bool
    ) throws -> Answer {
        var options = policy.curlOptions()
        options.shouldAbort = shouldAbort
        // The key must never follow a redirect to another host, and the results endpoint does not redirect.
        options.maxRedirects = 0
        let writer = try spool.writer(assetID: job.assetID, claim: job.claimToken)
        let response: CurlResponse
        do {
            response = try session.perform(
                CurlRequest(url: job.sourceURL, headers: [("Authorization", "Bearer \(key)"), ("Accept", kind.accept)]),
                options: options
            ) { bytes in try writer.write(bytes) }
        } catch {
            writer.discard()
            throw Archiver.mapCurl(error, maxBytes: policy.maxBytes)
        }
        switch response.status {
        case 200 where Self.isJSON(response.headers["content-type"]):
            // The bytes are base64 inside the JSON; the answer itself is only a carrier.
            defer { writer.discard() }
            return try Self.decodeJSONAnswer(path: writer.path, job: job, kind: kind, spool: spool)
        case 200:
            let (path, sha256) = try writer.finish(durable: false)
            return .done(
                Fetched(
                    path: path, sha256: sha256, size: writer.size, contentType: response.headers["content-type"],
                    finishReason: response.headers["finish-reason"].map { String($0.prefix(64)) },
                    seed: response.headers["seed"].flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }))
        case 202:
            writer.discard()
            return .inProgress(retryAfter: Self.retryAfter(response.headers["retry-after"]).map { max($0, Self.minimumPollInterval) })
        default:
            writer.discard()
            return .refused(
                status: response.status, message: Self.providerMessage(response.body, redacting: keys),
                retryAfter: Self.retryAfter(response.headers["retry-after"]))
        }
    }

    /// A JSON 200 (`{"result"|"image"|"audio"|"video": base64, "finish_reason", "seed"}`), spooled as it
    /// came: its base64 is decoded from the mapped file into the asset's spool file, 64 KiB at a time,
    /// so neither the answer nor the decoded bytes are held in memory.
    static func decodeJSONAnswer(path: String, job: ArchiveJob, kind: StabilityGenerationKind, spool: Spool) throws -> Answer {
        try MappedFile.withBytes(path: path) { body in
            let parsed: StabilityBody
            do {
                parsed = try StabilityBody.parse(body)
            } catch {
                throw ArchiveError(.sourceStatus, "Stability answered 200 with JSON that holds no result: \(error)", status: 200)
            }
            guard let artifact = parsed.artifacts.first else {
                // `{"id", "status": "in-progress"}` with a 200: not done yet.
                return .inProgress(retryAfter: nil)
            }
            guard parsed.artifacts.count == 1 else {
                throw ArchiveError(.sourceStatus, "Stability answered 200 with \(parsed.artifacts.count) outputs in one result", status: 200)
            }
            // The endpoint says what the bytes are when the field does not (`result`).
            let typed = StabilityBody.Artifact(
                pointer: artifact.pointer, kind: kind == .audio ? "audio" : artifact.kind,
                base64: artifact.base64, seed: artifact.seed, finishReason: artifact.finishReason)
            let spooled: Spooled
            do {
                spooled = try InlineSpooler.spool(typed, body: body, writer: try spool.decodedWriter(assetID: job.assetID, claim: job.claimToken))
            } catch let error as InlineSpooler.InvalidBase64 {
                throw ArchiveError(.sourceStatus, "Stability answered 200 with JSON whose \(error)", status: 200)
            }
            return .done(
                Fetched(
                    path: spooled.path, sha256: spooled.sha256, size: spooled.size, contentType: spooled.contentType,
                    finishReason: artifact.finishReason, seed: artifact.seed))
        }
    }

    static func isJSON(_ contentType: String?) -> Bool {
        guard let base = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
        return base == "application/json" || base.hasSuffix("+json")
    }

    /// Every key said 404 or 401: with one key that is its answer; with several, the error says so. Any
    /// 404 makes it a 404 (after the deadline: the result is gone); only 401s stay a 401.
    static func everyKeyRefused(_ refusals: [(status: Int, message: String?)]) -> ArchiveError {
        let status = refusals.contains { $0.status == 404 } ? 404 : 401
        let message = (refusals.first { $0.status == status } ?? refusals[0]).message
        let what: String
        if refusals.count == 1 {
            what = "\(status)"
        } else if refusals.allSatisfy({ $0.status == status }) {
            what = "\(status) to each of the \(refusals.count) API keys"
        } else {
            let unauthorized = refusals.filter { $0.status == 401 }.count
            what = "404 or 401 to each of the \(refusals.count) API keys (401 to \(unauthorized))"
        }
        return ArchiveError(.sourceStatus, "Stability answered \(what)\(message.map { ": \($0)" } ?? "")", status: status)
    }

    /// The configured keys, empty ones and repeats dropped, in their order.
    static func distinct(_ keys: [String]) -> [String] {
        var seen = Set<String>()
        return keys.filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// Without a Retry-After: poll at about a tenth of the time the generation has taken so far, between
    /// 10 s and 60 s — as often as Stability allows for an image, gently for a long one.
    static func pollDelay(job: ArchiveJob, now: Date) -> TimeInterval {
        guard let deadline = job.deadline else { return minimumPollInterval }
        let elapsed = now.timeIntervalSince(deadline.addingTimeInterval(-StabilityIntake.resultRetention))
        return min(60, max(minimumPollInterval, elapsed / 10))
    }

    /// Delta seconds only (Stability sends those), bounded to ten minutes.
    static func retryAfter(_ value: String?) -> TimeInterval? {
        guard let value, let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 else { return nil }
        return TimeInterval(min(seconds, 600))
    }

    /// Stability's error answer is `{"id", "name", "errors": [...]}`; its messages are what an operator
    /// needs to read. Cut short, printable, and never containing any of the keys.
    static func providerMessage(_ body: [UInt8], redacting keys: [String]) -> String? {
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
        for key in keys where !key.isEmpty { text = text.replacingOccurrences(of: key, with: "[redacted]") }
        text = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : Character($0) }).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        return text.count > maxMessageLength ? String(text.prefix(maxMessageLength)) + "…" : text
    }

    static func providerMessage(_ body: [UInt8], redacting key: String) -> String? {
        providerMessage(body, redacting: [key])
    }
}

/// What this process remembers per generation between polls: when it last asked (so a lease that ran
/// out, a drain or a retry requested by hand never polls sooner than the interval), and a fingerprint of
/// the key that owns it (asked first next time, so a poll costs one request, not one per key).
/// Bounded: when full, entries past the interval go first; losing one costs at most a few requests.
final class PollMemory: Sendable {
    struct Entry {
        var lastPoll: Date
        var owner: SHA256.Digest?
    }

    static let capacity = 10_000
    private let entries = Mutex<[String: Entry]>([:])

    /// Seconds to wait before `url` may be polled again, or nil when it may be polled now. A clock that
    /// went backwards never makes the wait longer than the interval.
    func wait(before url: String, now: Date) -> TimeInterval? {
        guard let last = entries.withLock({ $0[url]?.lastPoll }) else { return nil }
        let elapsed = now.timeIntervalSince(last)
        guard elapsed < StabilitySource.minimumPollInterval else { return nil }
        return min(StabilitySource.minimumPollInterval, StabilitySource.minimumPollInterval - elapsed)
    }

    func polled(_ url: String, now: Date) {
        entries.withLock { entries in
            if entries[url] == nil, entries.count >= Self.capacity {
                entries = entries.filter { now.timeIntervalSince($0.value.lastPoll) < StabilitySource.minimumPollInterval }
                if entries.count >= Self.capacity { entries.removeAll() }
            }
            entries[url, default: Entry(lastPoll: now)].lastPoll = now
        }
    }

    /// `keys` with the remembered owner of `url` first.
    func order(_ keys: [String], for url: String) -> [String] {
        guard let owner = entries.withLock({ $0[url]?.owner }), let index = keys.firstIndex(where: { Self.fingerprint($0) == owner }) else {
            return keys
        }
        var ordered = keys
        ordered.insert(ordered.remove(at: index), at: 0)
        return ordered
    }

    func remember(owner key: String, of url: String) {
        let fingerprint = Self.fingerprint(key)
        entries.withLock { $0[url]?.owner = fingerprint }
    }

    static func fingerprint(_ key: String) -> SHA256.Digest { SHA256.hash(data: Data(key.utf8)) }
}

/// A spool file read through a read-only mapping: a JSON answer as large as `fetch.max_bytes` is parsed
/// without being copied into memory.
enum MappedFile {
    static func withBytes<T>(path: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) throws -> T {
        let descriptor = try spoolCall("cannot open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(descriptor) }
        var info = stat()
        _ = try spoolCall("cannot stat \(path)") { fstat(descriptor, &info) }
        let size = Int(info.st_size)
        guard size > 0 else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        // MAP_FAILED is a C macro Swift does not import: it is (void *)-1.
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), base != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw ArchiveError(.spool, SystemCallError("cannot map \(path)", errno: errno).description)
        }
        defer { munmap(base, size) }
        return try body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: size))
    }
}

extension Spool {
    /// A writer for bytes decoded from a spooled JSON answer: its `.part` is named apart from the answer's
    /// own (both exist while decoding), and it ends as the asset's usual spool file.
    func decodedWriter(assetID: Int64, claim: UUID) throws -> Writer {
        try Writer(
            path: "\(directory)/asset-\(assetID).decoded.\(claim.uuidString.lowercased()).\(getpid()).part",
            finalPath: finalPath(assetID: assetID))
    }
}
