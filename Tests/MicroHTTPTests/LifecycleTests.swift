import Foundation
import Glibc
import MicroHTTP
import Primitives
import Synchronization
import TestSupport
import Testing

@Suite("Server lifecycle")
struct LifecycleTests {
    /// Waits until the server has closed its listening socket: connecting is refused.
    private func waitUntilRefused(_ port: Int) throws {
        try waitUntil(timeout: .seconds(5), "new connections to be refused") {
            do {
                _ = try RawConnection(port: port)
                return false
            } catch is SystemCallError { return true }
        }
    }

    private func healthRouter() -> Router {
        var router = Router()
        router.add("GET", "/healthz") { _ in .json(["status": "ok"]) }
        return router
    }

    @Test("port 0 asks the kernel; boundPort reports the real port")
    func boundPortWithPortZero() throws {
        let server = HTTPServer(router: healthRouter(), configuration: .init(port: 0))
        #expect(server.boundPort == 0)
        try server.start()
        defer { server.stop() }
        #expect(server.boundPort > 0)
        #expect(try send(server.boundPort, "GET", "/healthz").status == 200)
    }

    @Test("serves on an already listening socket handed over (systemd socket activation)")
    func inheritedListeningSocket() throws {
        let (fd, port) = try LoopbackSocket.listening(backlog: 16)

        // host/port are deliberately wrong: the inherited socket must win.
        let server = HTTPServer(router: healthRouter(), configuration: .init(host: "192.0.2.1", port: 1, listeningSocket: fd))
        try server.start()
        #expect(server.boundPort == port)
        #expect(try send(port, "GET", "/healthz").status == 200)
        server.stop()
        // The socket was closed on stop: connecting is refused.
        #expect(throws: SystemCallError.self) { _ = try RawConnection(port: port) }
    }

    @Test("graceful stop: the in-flight request completes, new connections are refused, stop returns")
    func gracefulStop() throws {
        let gate = Gate()
        var router = Router()
        router.add("GET", "/slow") { _ in
            gate.arriveAndWait(timeout: .seconds(15)) ? Response(status: 200, body: Array("done".utf8)) : Response(status: 503)
        }
        let server = HTTPServer(router: router, configuration: .init(port: 0))
        try server.start()
        let port = server.boundPort

        let slow = Background { try send(port, "GET", "/slow") }
        try waitUntil(timeout: .seconds(5), "the slow handler to start") { gate.arrived == 1 }
        #expect(server.inFlightRequests == 1)

        let stopping = Background { server.stop(drainTimeout: .seconds(20)) }
        try waitUntilRefused(port)
        #expect(!stopping.isFinished)  // still draining the slow request
        #expect(!slow.isFinished)

        gate.open()
        let response = try slow.value()
        #expect(response.status == 200)
        #expect(response.text == "done")
        #expect(response.header("Connection")?.lowercased() == "close")
        try stopping.value(timeout: .seconds(10))
        #expect(server.inFlightRequests == 0)
    }

    @Test("graceful stop answers a client accepted before the listener closed whose request had not arrived yet")
    func stopAnswersAnAcceptedConnection() throws {
        // Under socket activation this is a webhook sent as the old process stops: the kernel's accept
        // happened, so only this process can answer it; closing it would be a send failure at the sender.
        let server = HTTPServer(router: healthRouter(), configuration: .init(port: 0))
        try server.start()
        let port = server.boundPort
        let early = try RawConnection(port: port)
        try waitUntil(timeout: .seconds(5), "the connection to be accepted") { server.openConnections == 1 }

        let stopping = Background { server.stop(drainTimeout: .seconds(20)) }
        try waitUntilRefused(port)
        #expect(!stopping.isFinished, "stop returned while an accepted connection still owed an answer")
        try early.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = try early.readResponse()
        #expect(response.status == 200)
        #expect(response.header("Connection")?.lowercased() == "close")
        try stopping.value(timeout: .seconds(10))
    }

    @Test("an accepted connection that never sends holds the stop only until the drain timeout; idle kept-alive ones not at all")
    func stopIsBoundedBySilentConnections() throws {
        let server = HTTPServer(router: healthRouter(), configuration: .init(port: 0))
        try server.start()
        let port = server.boundPort
        let keptAlive = try RawConnection(port: port)
        try keptAlive.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try keptAlive.readResponse().status == 200)
        try waitUntil(timeout: .seconds(5), "the kept-alive connection to be idle") { server.openConnections == 1 }
        var started = ContinuousClock.now
        server.stop(drainTimeout: .seconds(20))
        #expect(ContinuousClock.now - started < .seconds(5), "an idle kept-alive connection held the stop")

        let second = HTTPServer(router: healthRouter(), configuration: .init(port: 0))
        try second.start()
        let silent = try RawConnection(port: second.boundPort)
        try waitUntil(timeout: .seconds(5), "the silent connection to be accepted") { second.openConnections == 1 }
        started = ContinuousClock.now
        second.stop(drainTimeout: .seconds(1))
        let took = ContinuousClock.now - started
        #expect(took >= .seconds(1), "stop did not wait for the accepted connection (\(took))")
        #expect(took < .seconds(6), "a silent connection held the stop past its drain timeout (\(took))")
        _ = silent.readToEnd()
    }

    @Test("stop gives up waiting after the drain timeout")
    func drainTimeoutBounds() throws {
        let gate = Gate()
        var router = Router()
        router.add("GET", "/stuck") { _ in
            _ = gate.arriveAndWait(timeout: .seconds(3))
            return Response(status: 200)
        }
        let server = HTTPServer(router: router, configuration: .init(port: 0))
        try server.start()
        let port = server.boundPort
        let stuck = Background { try? send(port, "GET", "/stuck").status }
        try waitUntil(timeout: .seconds(5), "the stuck handler to start") { gate.arrived == 1 }
        let started = ContinuousClock.now
        server.stop(drainTimeout: .milliseconds(200))
        // Returns once the handler does (libmicrohttpd joins its thread), not after the full drain wait.
        #expect(ContinuousClock.now - started < .seconds(6))
        _ = try stuck.value()
    }

    @Test("start reports configuration, address and bind errors as values")
    func startErrors() throws {
        let first = HTTPServer(router: healthRouter(), configuration: .init(port: 0))
        try first.start()
        defer { first.stop() }
        #expect(throws: HTTPServerError.self) { try first.start() }
        do {
            try first.start()
        } catch {
            #expect(error.code == .alreadyStarted)
        }

        let taken = HTTPServer(router: healthRouter(), configuration: .init(port: first.boundPort))
        do {
            try taken.start()
            Issue.record("binding a taken port must fail")
        } catch {
            #expect(error.code == .startFailed)
            #expect(error.description.contains("\(first.boundPort)"))
        }

        let badHost = HTTPServer(router: healthRouter(), configuration: .init(host: "not a host!", port: 0))
        do {
            try badHost.start()
            Issue.record("expected failure")
        } catch { #expect(error.code == .invalidAddress) }

        let badPort = HTTPServer(router: healthRouter(), configuration: .init(port: 70000))
        do {
            try badPort.start()
            Issue.record("expected failure")
        } catch { #expect(error.code == .invalidConfiguration) }
    }

    @Test("IPv6 loopback binds when asked")
    func ipv6() throws {
        let server = HTTPServer(router: healthRouter(), configuration: .init(host: "::1", port: 0))
        do {
            try server.start()
        } catch {
            // A host without IPv6 cannot run this test; anything else is a real failure.
            #expect(error.code == .startFailed)
            return
        }
        defer { server.stop() }
        #expect(server.boundPort > 0)
    }
}
