import Foundation
import MicroHTTP
import Synchronization
import TestSupport
import Testing

/// A refusal of the kind routes throw.
struct Teapot: ResponseError {
    var status: Int { 418 }
    var errorCode: String { "teapot" }
    var message: String { "short and stout" }
    var headers: [(String, String)] { [("Retry-After", "7")] }
}

struct Unexpected: Error {}

/// A body check that refuses a body containing "forged", and counts what it saw.
final class ForgeryCheck: BodyCheck {
    let seen: Counter
    private var body: [UInt8] = []
    init(seen: Counter) { self.seen = seen }
    func update(_ bytes: UnsafeRawBufferPointer) {
        seen.increment()
        body += bytes
    }
    func finish() -> Response? {
        String(decoding: body, as: UTF8.self).contains("forged") ? .error(status: 401, code: "forged", message: "no") : nil
    }
}

/// One router with a route of every kind, answered in-process and over a socket: the answers must be the
/// same, because `respond(to:)` and the server share the path a request takes.
@Suite("Router.respond(to:) and thrown errors")
struct RespondTests {
    static func router(handled: Counter, pieces: Counter) -> Router {
        var router = Router(unhandledError: { error, head in
            .error(status: 599, code: "unhandled", message: "\(head.method) \(head.path): \(type(of: error))")
        })
        router.add("GET", "/blocking/{name}") { request in
            handled.increment()
            return Response(status: 200, body: Array("hello \(request.pathParameters["name"]!) \(request.query["x"] ?? "-")".utf8))
        }
        router.add("POST", "/echo") { request in Response(status: 200, body: request.body) }
        router.add("GET", "/throws") { _ in throw Teapot() }
        router.add("GET", "/throws-other") { _ in throw Unexpected() }
        router.add(
            "GET", "/immediate",
            immediate: { request in
                if request.query["answer"] == "now" { return Response(status: 203) }
                if request.query["answer"] == "throw" { throw Teapot() }
                return nil
            }
        ) { _ in Response(status: 200) }
        router.add("GET", "/deferred-now", deferred: { _ in .now(Response(status: 202)) })
        router.add("GET", "/deferred-throws", deferred: { _ in throw Teapot() })
        router.add(
            "GET", "/later",
            deferred: { _ in
                .later { responder in Thread.detachNewThread { responder.respond(Response(status: 201)) } }
            })
        router.add("GET", "/later-throws", deferred: { _ in .later { _ in throw Teapot() } })
        router.add("GET", "/on-pool", deferred: { _ in .laterOnPool { responder in responder.respond(Response(status: 204)) } })
        router.add("GET", "/on-pool-throws", deferred: { _ in .laterOnPool { _ in throw Unexpected() } })
        router.add("GET", "/dropped", deferred: { _ in .later { _ in } })
        router.add(
            "POST", "/gated", maxBodyBytes: 64 * 1024,
            gate: { head in
                if head.header("x-key") == nil { throw Teapot() }
                if head.header("x-key") != "k" { return .refuse(.error(status: 401, code: "wrong_key", message: "no")) }
                return .admit(ForgeryCheck(seen: pieces))
            }
        ) { request in
            handled.increment()
            return Response(status: 200, body: Array(String(request.body.count).utf8))
        }
        return router
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let method: String
        let target: String
        var headers: [String: String] = [:]
        var body: [UInt8] = []
        let status: Int
        var code: String?
        /// False where a raw client cannot read the answer reliably (HEAD has no body to frame; a body
        /// far over the limit is cut off by the server's early answer).
        var overSocket = true
        var testDescription: String { "\(method) \(target) -> \(status)" }
    }

    static let cases: [Case] = [
        Case(method: "GET", target: "/blocking/w%C3%B6rld?x=a+b", status: 200),
        Case(method: "HEAD", target: "/blocking/x", status: 200, overSocket: false),
        Case(method: "GET", target: "/throws", status: 418, code: "teapot"),
        Case(method: "GET", target: "/throws-other", status: 599, code: "unhandled"),
        Case(method: "GET", target: "/immediate?answer=now", status: 203),
        Case(method: "GET", target: "/immediate?answer=throw", status: 418, code: "teapot"),
        Case(method: "GET", target: "/immediate", status: 200),
        Case(method: "GET", target: "/deferred-now", status: 202),
        Case(method: "GET", target: "/deferred-throws", status: 418, code: "teapot"),
        Case(method: "GET", target: "/later", status: 201),
        Case(method: "GET", target: "/later-throws", status: 418, code: "teapot"),
        Case(method: "GET", target: "/on-pool", status: 204),
        Case(method: "GET", target: "/on-pool-throws", status: 599, code: "unhandled"),
        Case(method: "GET", target: "/dropped", status: 500, code: "internal_error"),
        Case(method: "GET", target: "/nowhere", status: 404, code: "not_found"),
        Case(method: "DELETE", target: "/throws", status: 405, code: "method_not_allowed"),
        Case(method: "GET", target: "/blocking/%ZZ", status: 400, code: "bad_request"),
        Case(method: "POST", target: "/gated", body: Array("a body".utf8), status: 418, code: "teapot"),
        Case(method: "POST", target: "/gated", headers: ["X-Key": "nope"], body: Array("a body".utf8), status: 401, code: "wrong_key"),
        Case(method: "POST", target: "/gated", headers: ["X-Key": "k"], body: Array("a forged body".utf8), status: 401, code: "forged"),
        Case(method: "POST", target: "/gated", headers: ["X-Key": "k"], body: Array(repeating: 0x61, count: 50_000), status: 200),
        Case(
            method: "POST", target: "/gated", headers: ["X-Key": "k"], body: Array(repeating: 0x61, count: 70_000), status: 413,
            code: "payload_too_large", overSocket: false),
        Case(
            method: "POST", target: "/gated", headers: ["X-Key": "k", "Content-Length": "70000"], status: 413,
            code: "payload_too_large", overSocket: false),
        Case(
            method: "POST", target: "/echo", body: Array(repeating: 0x61, count: 2 << 20), status: 413, code: "payload_too_large",
            overSocket: false),
    ]

    @Test("in-process", arguments: cases)
    func inProcess(_ c: Case) throws {
        let router = Self.router(handled: Counter(), pieces: Counter())
        let response = try router.respond(to: Request(method: c.method, target: c.target, headers: c.headers, body: c.body))
        #expect(response.status == c.status)
        if let code = c.code {
            #expect(
                String(decoding: response.body, as: UTF8.self).contains(#""code":"\#(code)""#), "\(String(decoding: response.body, as: UTF8.self))")
        }
    }

    /// The same requests over a socket get the same answers: the in-process path is the server's.
    @Test("over a socket", arguments: cases.filter(\.overSocket))
    func overASocket(_ c: Case) throws {
        let router = Self.router(handled: Counter(), pieces: Counter())
        try withServer(router) { _, port in
            let path = c.target
            let response = try send(
                port, c.method, path, headers: c.headers.map { ($0.key, $0.value) },
                body: c.body.isEmpty ? nil : c.body)
            #expect(response.status == c.status)
            if let code = c.code { #expect(response.errorCode == code) }
        }
    }

    @Test func answersCarryWhatTheRouteSaw() throws {
        let handled = Counter()
        let pieces = Counter()
        let router = Self.router(handled: handled, pieces: pieces)
        let hello = try router.respond(to: Request(method: "GET", target: "/blocking/w%C3%B6rld?x=a+b"))
        #expect(String(decoding: hello.body, as: UTF8.self) == "hello wörld a b")
        let teapot = try router.respond(to: Request(method: "GET", target: "/throws"))
        #expect(teapot.headers.contains { $0.0 == "Retry-After" && $0.1 == "7" })
        #expect(teapot.headers.contains { $0.0 == "Content-Type" && $0.1 == "application/json" })
        let unhandled = try router.respond(to: Request(method: "GET", target: "/throws-other"))
        #expect(String(decoding: unhandled.body, as: UTF8.self).contains("GET /throws-other: Unexpected"))
        // The body check saw the body in pieces, and the handler ran only for the accepted body.
        #expect(handled.count == 1)
        let accepted = try router.respond(
            to: Request(
                method: "POST", target: "/gated", headers: ["x-key": "k"],
                body: Array(repeating: 0x61, count: 50_000)))
        #expect(String(decoding: accepted.body, as: UTF8.self) == "50000")
        #expect(pieces.count > 1)
        #expect(handled.count == 2)
        _ = try router.respond(to: Request(method: "POST", target: "/gated", headers: ["x-key": "k"], body: Array("forged".utf8)))
        #expect(handled.count == 2, "a refused body never reaches the handler")
    }

    @Test func aDeferredRouteThatNeverAnswersIsReportedNotWaitedOnForEver() throws {
        let box = ResponderBox()
        var router = Router()
        router.add("GET", "/held", deferred: { _ in .later { responder in box.keep(responder) } })
        let started = ContinuousClock.now
        #expect(throws: HTTPServerError.self) {
            _ = try router.respond(to: Request(method: "GET", target: "/held"), timeout: .milliseconds(200))
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(box.count == 1)
    }

    @Test func defaultRendererSaysNothingOfTheError() throws {
        var router = Router()
        router.add("GET", "/secret") { _ in throw HTTPError(status: 503, code: "busy", message: "later", headers: [("Retry-After", "3")]) }
        router.add("GET", "/bug") { _ in throw Unexpected() }
        let busy = try router.respond(to: Request(method: "GET", target: "/secret"))
        #expect(busy.status == 503)
        #expect(busy.headers.contains { $0.0 == "Retry-After" && $0.1 == "3" })
        let bug = try router.respond(to: Request(method: "GET", target: "/bug"))
        #expect(bug.status == 500)
        #expect(!String(decoding: bug.body, as: UTF8.self).contains("Unexpected"))
    }
}
