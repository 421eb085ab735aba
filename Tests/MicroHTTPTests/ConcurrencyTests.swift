import Foundation
import MicroHTTP
import Synchronization
import TestSupport
import Testing

@Suite("Concurrency and connection limits")
struct ConcurrencyTests {
    @Test("blocking handlers run concurrently, each on a pool thread")
    func blockingHandlersOverlap() throws {
        let gate = Gate()
        var router = Router()
        // Each handler blocks until all 8 are inside at once; with serial handlers none would get there.
        router.add("GET", "/wait") { _ in
            gate.arriveAndWait(untilArrived: 8, timeout: .seconds(10))
                ? Response(status: 200) : .error(status: 503, code: "timeout", message: "not all handlers arrived")
        }
        try withServer(router) { _, port in
            let requests = (0..<8).map { _ in Background { try send(port, "GET", "/wait").status } }
            let statuses = try requests.map { try $0.value(timeout: .seconds(20)) }
            #expect(statuses == Array(repeating: 200, count: 8))
            #expect(gate.arrived == 8)
        }
    }

    @Test("blocked handlers leave the event thread free; an immediate answer skips the pool, nil falls back to it")
    func immediateAnswersWhileHandlersBlock() throws {
        let gate = Gate()
        var router = Router()
        router.add("GET", "/hold") { _ in
            gate.arriveAndWait(timeout: .seconds(15)) ? Response(status: 200) : Response(status: 503)
        }
        router.add(
            "GET", "/answer/{kind}",
            immediate: { request in
                request.pathParameters["kind"] == "memory" ? Response(status: 203) : nil
            }
        ) { _ in Response(status: 200) }
        // One event thread: if a blocked handler held it, nothing below could be answered.
        try withServer(router, configure: { $0.eventThreads = 1 }) { _, port in
            let held = (0..<4).map { _ in Background { try send(port, "GET", "/hold").status } }
            try waitUntil(timeout: .seconds(5), "four handlers blocked at once") { gate.arrived == 4 }
            #expect(try send(port, "GET", "/answer/memory").status == 203)
            #expect(try send(port, "GET", "/answer/database").status == 200)
            gate.open()
            #expect(try held.map { try $0.value() } == [200, 200, 200, 200])
        }
    }

    @Test("connections past the limit are not served until a slot frees")
    func connectionLimit() throws {
        let gate = Gate()
        var router = Router()
        router.add("GET", "/hold") { _ in
            gate.arriveAndWait(timeout: .seconds(15)) ? Response(status: 200) : Response(status: 503)
        }
        router.add("GET", "/quick") { _ in Response(status: 200) }
        try withServer(
            router,
            configure: {
                $0.connectionLimit = 2
                $0.eventThreads = 2
            }
        ) { _, port in
            let held = (0..<2).map { _ in Background { try send(port, "GET", "/hold").status } }
            try waitUntil(timeout: .seconds(5), "two handlers holding their connections") { gate.arrived == 2 }

            // The kernel completes the handshake; libmicrohttpd leaves the surplus connection in the
            // listen backlog, unserved, while the limit is reached.
            let extra = try RawConnection(port: port, timeout: .seconds(1))
            try extra.send("GET /quick HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let (early, _) = extra.readToEnd()
            #expect(early.isEmpty, "a connection past the limit must not be served")
            #expect(gate.arrived == 2)

            gate.open()
            #expect(try held.map { try $0.value() } == [200, 200])
            // Once the held connections are gone there is room again, for new clients and the waiting one.
            try waitUntil(timeout: .seconds(5), "a free connection slot") {
                (try? send(port, "GET", "/quick").status) == 200
            }
        }
    }

    @Test("an idle connection is closed after the connection timeout")
    func connectionTimeout() throws {
        try withServer(Router(), configure: { $0.connectionTimeoutSeconds = 1 }) { _, port in
            let connection = try RawConnection(port: port, timeout: .seconds(10))
            let started = ContinuousClock.now
            try connection.send("GET /partial HTTP/1.1\r\nHost: x\r\n")  // headers never finished
            let (bytes, error) = connection.readToEnd()
            let elapsed = ContinuousClock.now - started
            #expect(error == nil)  // EOF from the server, not our receive timeout
            #expect(!String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            #expect(elapsed < .seconds(8))
        }
    }
}
