import Foundation
import MicroHTTP
import Synchronization
import TestSupport
import Testing

@Suite("Bounded stop and event-thread liveness")
struct StopDeadlineTests {
    @Test("with a handler deadline, stop answers a stuck handler and a silent responder 503 + Retry-After and returns")
    func handlerDeadlineBoundsTheStop() throws {
        let gate = Gate()
        let box = ResponderBox()
        var router = Router()
        router.add("GET", "/stuck") { _ in
            _ = gate.arriveAndWait(timeout: .seconds(20))
            return Response(status: 200)
        }
        router.add("GET", "/silent", deferred: { _ in .later { responder in box.keep(responder) } })
        let server = HTTPServer(router: router, configuration: .init(port: 0))
        try server.start()
        let port = server.boundPort
        let stuck = Background { try send(port, "GET", "/stuck") }
        let silent = Background { try send(port, "GET", "/silent") }
        try waitUntil(timeout: .seconds(5), "both requests waiting") { gate.arrived == 1 && box.count == 1 }

        let began = ContinuousClock.now
        server.stop(drainTimeout: .milliseconds(300), handlerDeadline: .milliseconds(500))
        let took = ContinuousClock.now - began
        #expect(took < .seconds(3), "stop took \(took) with a 0.5 s handler deadline")
        for response in [try stuck.value(), try silent.value()] {
            #expect(response.status == 503)
            #expect(response.header("Retry-After") == "5")
        }
        // The late answers go nowhere, and nothing breaks.
        #expect(box.takeAll().allSatisfy { !$0.responder.respond(Response(status: 200)) })
        gate.open()
    }

    @Test("an event thread inside a callback shows as busy for as long as it stays there; idle threads do not")
    func eventThreadWatch() throws {
        let gate = Gate()
        var router = Router()
        // An immediate handler runs on the event thread: blocking it is the bug the watchdog must see.
        router.add(
            "GET", "/wedge",
            immediate: { _ in
                _ = gate.arriveAndWait(timeout: .seconds(20))
                return Response(status: 200)
            }
        ) { _ in Response(status: 500) }
        router.add("GET", "/quick") { _ in Response(status: 200) }
        let server = HTTPServer(router: router, configuration: .init(port: 0, eventThreads: 2))
        try server.start()
        defer { server.stop(drainTimeout: .seconds(2)) }
        let port = server.boundPort
        #expect(try send(port, "GET", "/quick").status == 200)
        #expect(server.longestEventThreadCallback == .zero)

        let wedged = Background { try send(port, "GET", "/wedge") }
        try waitUntil(timeout: .seconds(5), "the wedge to start") { gate.arrived == 1 }
        try waitUntil(timeout: .seconds(5), "the wedged thread to show") { server.longestEventThreadCallback > .milliseconds(500) }
        gate.open()
        #expect(try wedged.value().status == 200)
        try waitUntil(timeout: .seconds(5), "the thread to be free again") { server.longestEventThreadCallback == .zero }
    }
}
