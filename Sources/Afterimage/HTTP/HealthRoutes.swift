import Foundation
import MicroHTTP
import PQ
import S3

/// `/healthz` and `/readyz`. Liveness says only that the process answers; readiness says whether the
/// daemon can do its job right now: the database answers a query and the bucket accepts a request signed
/// with our credentials. A load balancer or systemd should send traffic only when both hold.
public struct HealthRoutes: Sendable {
    let pool: Pool
    let storage: S3Client

    public init(pool: Pool, storage: S3Client) {
        self.pool = pool
        self.storage = storage
    }

    public func register(on router: inout Router) {
        // Liveness needs no waiting: answered on the event thread.
        let alive = Response.json(raw: Array(#"{"status":"ok"}"#.utf8))
        router.add("GET", "/healthz", immediate: { _ in alive }) { _ in alive }
        router.add("GET", "/readyz") { _ in self.readiness() }
    }

    /// Both checks run every time (no caching): a probe must see an outage as soon as it starts.
    func readiness() -> Response {
        var failures: [(String, String)] = []
        do {
            try pool.withConnection { connection in _ = try connection.query("SELECT 1") }
        } catch {
            failures.append(("database", "\(error)"))
        }
        do {
            try storage.headBucket()
        } catch {
            failures.append(("storage", "\(error)"))
        }
        guard !failures.isEmpty else {
            return .json(raw: Array(#"{"status":"ready","checks":{"database":"ok","storage":"ok"}}"#.utf8))
        }
        let message = "not ready: " + failures.map { "\($0.0): \($0.1)" }.joined(separator: "; ")
        return .json(status: 503, ReadinessFailure(
            error: .init(code: "not_ready", message: message),
            checks: Dictionary(uniqueKeysWithValues: [("database", "ok"), ("storage", "ok")].map { name, ok in
                (name, failures.first { $0.0 == name }.map { $0.1 } ?? ok)
            })))
    }
}

struct ReadinessFailure: Encodable {
    struct Detail: Encodable { let code: String; let message: String }
    let error: Detail
    let checks: [String: String]
}
