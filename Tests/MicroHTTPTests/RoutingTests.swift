import Foundation
import Testing

@testable import MicroHTTP

@Suite("Routing")
struct RoutingTests {
    private func jsonOf(_ dictionary: [String: String]) -> Response { .json(dictionary) }

    @Test("path parameters are matched and percent-decoded once")
    func pathParameters() throws {
        var router = Router()
        router.add("GET", "/v1/predictions/{provider}/{id}/outputs/{n}") { .json($0.pathParameters) }
        try withServer(router) { _, port in
            let response = try send(port, "GET", "/v1/predictions/replicate/abc%2Fdef%20x/outputs/3")
            #expect(response.status == 200)
            #expect(try response.json() == ["provider": "replicate", "id": "abc/def x", "n": "3"])

            // "%2525" decodes to "%25", not "%": one decoding only.
            let once = try send(port, "GET", "/v1/predictions/p%2525/x/outputs/0")
            #expect(try once.json()["provider"] == "p%25")
        }
    }

    @Test("unknown path is a JSON 404 with code not_found")
    func notFound() throws {
        var router = Router()
        router.add("GET", "/healthz") { _ in Response(status: 200) }
        try withServer(router) { _, port in
            let response = try send(port, "GET", "/nope")
            #expect(response.status == 404)
            #expect(response.errorCode == "not_found")
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header("Content-Length") == String(response.body.count))

            // A trailing slash is a different path.
            #expect(try send(port, "GET", "/healthz/").status == 404)
            #expect(try send(port, "GET", "/healthz").status == 200)
        }
    }

    @Test("an unknown path with a body is answered without reading the body")
    func notFoundWithBodyAnsweredEarly() throws {
        try withServer(Router()) { _, port in
            let connection = try RawConnection(port: port)
            // Announce a body and never send it: the answer must not wait for it.
            try connection.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 404)
            #expect(response.errorCode == "not_found")
        }
    }

    @Test("known path with the wrong method is a 405 listing the allowed methods")
    func methodNotAllowed() throws {
        var router = Router()
        router.add("GET", "/items/{id}") { _ in Response(status: 200) }
        router.add("DELETE", "/items/{id}") { _ in Response(status: 204) }
        try withServer(router) { _, port in
            let response = try send(port, "POST", "/items/7", body: [])
            #expect(response.status == 405)
            #expect(response.errorCode == "method_not_allowed")
            #expect(response.header("Allow") == "DELETE, GET, HEAD")
            #expect(try send(port, "DELETE", "/items/7").status == 204)
        }
    }

    @Test("HEAD uses the GET route and sends no body, with the GET Content-Length")
    func headFallsBackToGet() throws {
        var router = Router()
        router.add("GET", "/thing") { request in Response(status: 200, headers: [("X-Method", request.method)], body: Array("hello".utf8)) }
        try withServer(router) { _, port in
            let connection = try RawConnection(port: port)
            try connection.send("HEAD /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let (bytes, _) = connection.readToEnd()
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.contains("X-Method: HEAD"))
            #expect(text.contains("Content-Length: 5"))
            #expect(text.hasSuffix("\r\n\r\n"))  // headers only
        }
    }

    @Test("query arguments are decoded, last value wins, bare names are empty")
    func query() throws {
        var router = Router()
        router.add("GET", "/q") { .json($0.query) }
        try withServer(router) { _, port in
            let response = try send(port, "GET", "/q?a=1&b=hello%20world&a=2&c=x+y&flag&e%3D=%26")
            #expect(try response.json() == ["a": "2", "b": "hello world", "c": "x y", "flag": "", "e=": "&"])
        }
    }

    @Test("header names are lowercased and header(_:) ignores case")
    func headers() throws {
        var router = Router()
        router.add("GET", "/h") { request in
            .json([
                "direct": request.headers["x-custom-thing"] ?? "missing",
                "lookup": request.header("X-CUSTOM-THING") ?? "missing",
                "upper-key-absent": request.headers["X-Custom-Thing"] == nil ? "yes" : "no",
                "path": request.path,
                "remote": request.remoteAddress ?? "none",
            ])
        }
        try withServer(router) { _, port in
            let response = try send(port, "GET", "/h?x=1", headers: [("X-Custom-Thing", "Value 1")])
            #expect(
                try response.json() == [
                    "direct": "Value 1", "lookup": "Value 1", "upper-key-absent": "yes", "path": "/h", "remote": "127.0.0.1",
                ])
        }
    }

    @Test("a path with a broken percent escape is a 400")
    func malformedPath() throws {
        var router = Router()
        router.add("GET", "/items/{id}") { _ in Response(status: 200) }
        try withServer(router) { _, port in
            let response = try send(port, "GET", "/items/%zz")
            #expect(response.status == 400)
            #expect(response.errorCode == "bad_request")
        }
    }

    @Test("keep-alive: several requests on one connection")
    func keepAlive() throws {
        var router = Router()
        router.add("POST", "/echo", echoHandler)
        router.add("GET", "/missing-body-free") { _ in Response(status: 200) }
        try withServer(router) { _, port in
            let connection = try RawConnection(port: port)
            for index in 0..<3 {
                let body = testBytes(100 + index)
                try connection.send(Array("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
                let response = try connection.readResponse()
                #expect(response.body == body)
            }
            try connection.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().status == 404)
            try connection.send("GET /missing-body-free HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
        }
    }
}

@Suite("Router and helpers (no server)")
struct RouterUnitTests {
    @Test func resolution() {
        var router = Router()
        router.add("get", "/a/{x}/c") { _ in Response(status: 200) }
        router.add("POST", "/a/{x}/c") { _ in Response(status: 201) }
        guard case .matched(let route, let parameters) = router.resolve(method: "GET", rawPath: "/a/%41/c") else {
            Issue.record("expected a match")
            return
        }
        #expect(route.method == "GET")
        #expect(parameters == ["x": "A"])
        guard case .methodNotAllowed(let allow) = router.resolve(method: "PUT", rawPath: "/a/b/c") else {
            Issue.record("expected 405")
            return
        }
        #expect(allow == "GET, HEAD, POST")
        guard case .notFound = router.resolve(method: "GET", rawPath: "/a//c") else {
            Issue.record("an empty segment must not match a parameter")
            return
        }
        guard case .malformedPath = router.resolve(method: "GET", rawPath: "/a/%E2%28/c") else {
            Issue.record("invalid UTF-8 must be rejected")
            return
        }
    }

    @Test func percentDecoding() {
        #expect(percentDecode("a%20b") == "a b")
        #expect(percentDecode("a+b") == "a+b")
        #expect(percentDecode("a+b", plusIsSpace: true) == "a b")
        #expect(percentDecode("%") == nil)
        #expect(percentDecode("%4") == nil)
        #expect(percentDecode("%C3%A9") == "é")
        #expect(percentDecode("%2525") == "%25")
    }

    @Test func errorBody() throws {
        let response = Response.error(status: 401, code: "signature_invalid", message: "bad \"sig\"", headers: [("X-A", "b")])
        #expect(response.status == 401)
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"error":{"code":"signature_invalid","message":"bad \"sig\""}}"#)
        #expect(response.headers.contains { $0 == ("Content-Type", "application/json") })
        #expect(response.headers.contains { $0 == ("X-A", "b") })
    }

    @Test func jsonResponse() {
        struct Payload: Encodable {
            let b: Int
            let a: String
        }
        let response = Response.json(status: 202, Payload(b: 1, a: "x/y"))
        #expect(response.status == 202)
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"a":"x/y","b":1}"#)
    }
}
