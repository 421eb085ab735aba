import AfterimageTestSupport
import Foundation
import Logging
import MicroHTTP
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

@Suite("Webhook gate: headers before the body, signature as it arrives")
struct WebhookGateTests {
    static let secret = "whsec_" + Data("a gate test secret of some length".utf8).base64EncodedString()

    func gate(names: StandardWebhooksVerifier.HeaderNames = .standard, secrets: [String] = [secret]) -> WebhookGate {
        WebhookGate(
            provider: "test", headerNames: names, verifier: { StandardWebhooksVerifier(secrets: secrets) },
            logger: Logger(label: "test"))
    }

    func head(_ headers: [String: String], length: Int = 1000) -> RequestHead {
        RequestHead(method: "POST", path: "/hook", headers: headers, contentLength: length)
    }

    func signed(
        _ body: [UInt8], names: StandardWebhooksVerifier.HeaderNames = .standard,
        at timestamp: Int64 = Int64(Date().timeIntervalSince1970)
    ) -> [String: String] {
        Dictionary(uniqueKeysWithValues: SignedWebhook(body, secret: Self.secret, id: "msg_1", timestamp: timestamp, names: names).headers)
    }

    /// The status of a refusal at the head, or nil when the head was admitted.
    func refusalStatus(_ admission: Admission) -> Int? {
        if case .refuse(let response) = admission { return response.status }
        return nil
    }

    @Test func missingOrStaleHeadersAreRefusedFromTheHeadAlone() {
        let body = Array("{}".utf8)
        var headers = signed(body)
        #expect(refusalStatus(gate().admit(head(headers))) == nil)
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            var partial = headers
            partial[name] = nil
            #expect(refusalStatus(gate().admit(head(partial))) == 401, "without \(name)")
        }
        headers = signed(body, at: Int64(Date().timeIntervalSince1970) - 301)
        #expect(refusalStatus(gate().admit(head(headers))) == 401, "stale timestamp")
        headers = signed(body)
        headers["webhook-timestamp"] = "soon"
        #expect(refusalStatus(gate().admit(head(headers))) == 401)
        #expect(refusalStatus(gate(secrets: []).admit(head(signed(body)))) == 401, "no secret configured")
        headers = signed(body)
        headers["webhook-id"] = String(repeating: "x", count: 257)
        #expect(refusalStatus(gate().admit(head(headers))) == 400)
    }

    @Test func theBodyIsCheckedPieceByPiece() throws {
        let body = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        guard case .admit(let check?) = gate().admit(head(signed(body))) else {
            Issue.record("a signed head was not admitted with a check")
            return
        }
        for start in stride(from: 0, to: body.count, by: 7000) {
            body[start..<min(start + 7000, body.count)].withUnsafeBytes { check.update($0) }
        }
        #expect(check.finish() == nil)

        guard case .admit(let forged?) = gate().admit(head(signed(body))) else { return }
        var tampered = body
        tampered[100_000] ^= 1
        tampered.withUnsafeBytes { forged.update($0) }
        #expect(forged.finish()?.status == 401)
    }

    @Test func aProviderMayUseItsOwnHeaderNames() {
        let names = StandardWebhooksVerifier.HeaderNames(id: "svix-id", timestamp: "svix-timestamp", signature: "svix-signature")
        let body = Array("{}".utf8)
        #expect(refusalStatus(gate(names: names).admit(head(signed(body, names: names)))) == nil)
        #expect(refusalStatus(gate(names: names).admit(head(signed(body)))) == 401, "the standard names are not this provider's")
    }

    @Test func incrementalVerificationAgreesWithTheWholeBody() throws {
        let verifier = StandardWebhooksVerifier(secrets: [Self.secret])
        let body = Array("{\"id\":\"x\"}".utf8)
        let now = Int64(Date().timeIntervalSince1970)
        let signature = StandardWebhooksVerifier.sign(secret: Self.secret, id: "m", timestamp: now, body: body)
        try verifier.verify(id: "m", timestamp: String(now), signature: signature, body: body)
        var verification = try verifier.begin(id: "m", timestamp: String(now), signature: signature)
        verification.update(Array(body[..<3]))
        verification.update(Array(body[3...]))
        try verification.finish()
        var short = try verifier.begin(id: "m", timestamp: String(now), signature: signature)
        short.update(Array(body.dropLast()))
        #expect(throws: StandardWebhooksVerifier.Failure.self) { try short.finish() }
    }
}

@Suite("Readiness answers from a one-second cache and names only the dependency")
struct ReadinessProbeTests {
    final class Calls: Sendable {
        let count = Atomic<Int>(0)
        let failing = Atomic<Bool>(false)
    }

    func probe(_ calls: Calls, lifetime: Duration = .seconds(1)) -> ReadinessProbe {
        ReadinessProbe(
            lifetime: lifetime, logger: Logger(label: "test"),
            checks: [
                (
                    "database",
                    {
                        calls.count.add(1, ordering: .relaxed)
                        Thread.sleep(forTimeInterval: 0.05)
                        if calls.failing.load(ordering: .relaxed) {
                            throw TestSupportError(
                                "connection to server at \"db.internal\" (10.1.2.3), port 5432 failed: password authentication failed for user \"afterimage\""
                            )
                        }
                    }
                ),
                ("storage", {}),
            ])
    }

    @Test func checksRunOncePerLifetimeWhateverTheNumberOfProbes() throws {
        let calls = Calls()
        let readiness = probe(calls)
        #expect(readiness.cached() == nil)
        let threads = (0..<16).map { _ in
            let thread = Thread { for _ in 0..<20 { _ = readiness.answer() } }
            thread.start()
            return thread
        }
        try waitUntil(timeout: .seconds(10), "probes done") { threads.allSatisfy(\.isFinished) }
        #expect(calls.count.load(ordering: .relaxed) == 1, "320 probes within the second ran the checks more than once")
        #expect(readiness.cached()?.status == 200)
        try waitUntil(timeout: .seconds(3), "the cached answer expires") { readiness.cached() == nil }
        _ = readiness.answer()
        #expect(calls.count.load(ordering: .relaxed) == 2)
    }

    @Test func aFailureNamesTheDependencyAndNothingElse() throws {
        let calls = Calls()
        calls.failing.store(true, ordering: .relaxed)
        let response = probe(calls, lifetime: .milliseconds(1)).answer()
        #expect(response.status == 503)
        let text = String(decoding: response.body, as: UTF8.self)
        #expect(text.contains("database: unavailable"), "\(text)")
        for leak in ["db.internal", "10.1.2.3", "5432", "afterimage", "password"] {
            #expect(!text.contains(leak), "\(leak) in \(text)")
        }
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        #expect(object?["checks"] as? [String: String] == ["database": "unavailable", "storage": "ok"])
    }
}

@Suite("HTTP limits in the configuration")
struct HTTPSettingsTests {
    @Test func newKeysLoadWithTheirDefaults() async throws {
        let defaults = try await SettingsLoader.load(configFile: nil, environment: [:])
        #expect(defaults.http.headerTimeoutSeconds == 10)
        #expect(defaults.http.requestTimeoutSeconds == 30)
        #expect(defaults.http.perIPConnectionLimit == 0)
        #expect(defaults.http.maxInflightBodyBytes == 256 << 20)
        let set = try await SettingsLoader.load(
            configFile: nil,
            environment: [
                "AFTERIMAGE_HTTP_HEADER_TIMEOUT": "5", "AFTERIMAGE_HTTP_REQUEST_TIMEOUT": "20",
                "AFTERIMAGE_HTTP_PER_IP_CONNECTION_LIMIT": "16", "AFTERIMAGE_HTTP_MAX_INFLIGHT_BODY_BYTES": "1048576",
            ])
        #expect(set.http.headerTimeoutSeconds == 5)
        #expect(set.http.requestTimeoutSeconds == 20)
        #expect(set.http.perIPConnectionLimit == 16)
        #expect(set.http.maxInflightBodyBytes == 1 << 20)
        let description = set.redactedDescription()
        for key in [
            "http.header_timeout = 5", "http.request_timeout = 20", "http.per_ip_connection_limit = 16",
            "http.max_inflight_body_bytes = 1048576",
        ] {
            #expect(description.contains(key))
        }
    }

    /// The loader accepted up to 100,000 connections while the server refused more than 65,536 at start.
    @Test func loaderAndServerAgreeOnTheConnectionLimit() async throws {
        let upper = HTTPServer.Configuration.connectionLimitRange.upperBound
        let accepted = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_HTTP_CONNECTION_LIMIT": String(upper)])
        #expect(accepted.http.connectionLimit == upper)
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_HTTP_CONNECTION_LIMIT": String(upper + 1)])
            Issue.record("a connection limit the server refuses was accepted")
        } catch {
            #expect(error.key == "http.connection_limit")
        }
    }

    @Test func headerTimeoutMustNotExceedTheRequestTimeout() async throws {
        do {
            _ = try await SettingsLoader.load(configFile: nil, environment: ["AFTERIMAGE_HTTP_HEADER_TIMEOUT": "40"])
            Issue.record("a header timeout longer than the request timeout was accepted")
        } catch {
            #expect(error.key == "http.header_timeout")
        }
    }
}
