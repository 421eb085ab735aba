import Foundation
import Logging
import MicroHTTP
import PQ
import S3
import Synchronization

/// `/healthz` and `/readyz`. Liveness says only that the process answers; readiness says whether the
/// daemon can do its job right now: the database answers a query and the bucket accepts a request signed
/// with our credentials. A load balancer or systemd should send traffic only when both hold.
public struct HealthRoutes: Sendable {
    let readiness: ReadinessProbe

    public init(pool: Pool, storage: S3Client, logger: Logger, cacheLifetime: Duration = .seconds(1)) {
        readiness = ReadinessProbe(
            lifetime: cacheLifetime, logger: logger,
            checks: [
                ("database", { try pool.withConnection { connection in _ = try connection.query("SELECT 1") } }),
                ("storage", { try storage.headBucket() }),
            ])
    }

    public func register(on router: inout Router) {
        // Liveness needs no waiting: answered on the event thread.
        let alive = Response.json(raw: Array(#"{"status":"ok"}"#.utf8))
        router.add("GET", "/healthz", immediate: { _ in alive }) { _ in alive }
        // A fresh cached answer is given on the event thread; otherwise the checks run on a pool thread.
        router.add("GET", "/readyz", immediate: { _ in readiness.cached() }) { _ in readiness.answer() }
    }
}

/// Runs the readiness checks at most once per `lifetime` and answers from the last result in between.
///
/// Why cached: each check is a database round trip and a signed request to the bucket. A probe polled by
/// several load balancers, or by anyone who can reach the port, would otherwise turn into as many of both;
/// one second stale is still prompt for a probe. Concurrent probes that find the result stale wait for one
/// run of the checks instead of each starting their own.
///
/// Why terse: the answer is public. A failure says only which dependency failed (`database: unavailable`);
/// the driver's message (host, port, user, bucket) goes to the log, once per change of state.
final class ReadinessProbe: Sendable {
    typealias Check = @Sendable () throws -> Void

    private struct Cached {
        var response: Response
        var at: ContinuousClock.Instant
        var failing: Set<String>
    }

    let lifetime: Duration
    let logger: Logger
    private let checks: [(name: String, run: Check)]
    private let cache = Mutex<Cached?>(nil)
    /// Held while the checks run, so concurrent stale probes run them once.
    private let running = Mutex(())

    init(lifetime: Duration, logger: Logger, checks: [(String, Check)]) {
        self.lifetime = lifetime
        self.logger = logger
        self.checks = checks.map { (name: $0.0, run: $0.1) }
    }

    /// The last answer while it is fresh, else nil.
    func cached(now: ContinuousClock.Instant = .now) -> Response? {
        cache.withLock { cached in
            guard let cached, now - cached.at < lifetime else { return nil }
            return cached.response
        }
    }

    /// A fresh answer, running the checks when the last one is stale.
    func answer() -> Response {
        if let fresh = cached() { return fresh }
        return running.withLock { _ in
            if let fresh = cached() { return fresh }  // another probe ran them while this one waited
            let (response, failing) = runChecks()
            cache.withLock { $0 = Cached(response: response, at: .now, failing: failing) }
            return response
        }
    }

    private func runChecks() -> (Response, Set<String>) {
        var failing: Set<String> = []
        var errors: [String: String] = [:]
        for check in checks {
            do {
                try check.run()
            } catch {
                failing.insert(check.name)
                errors[check.name] = "\(error)"
            }
        }
        let previously = cache.withLock { $0?.failing }
        if previously != failing {
            if failing.isEmpty {
                logger.notice("ready")
            } else {
                for name in failing.sorted() {
                    logger.error("not ready", metadata: ["dependency": "\(name)", "error": "\(errors[name] ?? "")"])
                }
            }
        }
        guard !failing.isEmpty else {
            let fields = checks.map { "\"\($0.name)\":\"ok\"" }.joined(separator: ",")
            return (.json(raw: Array(#"{"status":"ready","checks":{"#.utf8) + Array(fields.utf8) + Array("}}".utf8)), failing)
        }
        let names = checks.map(\.name).filter(failing.contains)
        let message = "not ready: " + names.map { "\($0): unavailable" }.joined(separator: "; ")
        let body = ReadinessFailure(
            error: .init(code: "not_ready", message: message),
            checks: Dictionary(
                uniqueKeysWithValues: checks.map { check in
                    (check.name, failing.contains(check.name) ? "unavailable" : "ok")
                }))
        return (.json(status: 503, body), failing)
    }
}

struct ReadinessFailure: Encodable {
    struct Detail: Encodable {
        let code: String
        let message: String
    }
    let error: Detail
    let checks: [String: String]
}
