import Foundation
import MicroHTTP
import Synchronization
import TestSupport
import Testing

/// Responders handed out by a deferred route, kept until the test answers them from its own thread.
final class ResponderBox: Sendable {
    private let held = Mutex<[(responder: Responder, tag: Int)]>([])
    var count: Int { held.withLock { $0.count } }
    func keep(_ responder: Responder, tag: Int = 0) { held.withLock { $0.append((responder, tag)) } }
    func takeAll() -> [(responder: Responder, tag: Int)] {
        held.withLock { value in
            defer { value = [] }
            return value
        }
    }
}

@Suite("Deferred handlers")
struct DeferredTests {
    @Test("answers given later from another thread reach their clients; the event thread stays free meanwhile")
    func answersLater() throws {
        let box = ResponderBox()
        var router = Router()
        router.add(
            "POST", "/later",
            deferred: { request in
                // Echo the body length, so each answer is seen to reach its own request.
                let size = request.body.count
                return .later { responder in box.keep(responder, tag: size) }
            })
        router.add("GET", "/now", deferred: { _ in .now(Response(status: 204)) })
        router.add("GET", "/quick") { _ in Response(status: 200) }
        try withServer(router, configure: { $0.eventThreads = 1 }) { _, port in
            let waiting = (1...4).map { n in Background { try send(port, "POST", "/later", body: Array(repeating: 0x61, count: n)) } }
            try waitUntil(timeout: .seconds(5), "four deferred requests held") { box.count == 4 }
            // One event thread and four unanswered requests: other routes are still served.
            #expect(try send(port, "GET", "/now").status == 204)
            #expect(try send(port, "GET", "/quick").status == 200)
            #expect(waiting.allSatisfy { !$0.isFinished })
            let responders = box.takeAll()
            Thread.detachNewThread {
                for (responder, size) in responders.reversed() { responder.respond(Response(status: 200, body: Array(String(size).utf8))) }
            }
            let answers = try waiting.map { try $0.value() }
            #expect(answers.map(\.status) == [200, 200, 200, 200])
            #expect(answers.map { String(decoding: $0.body, as: UTF8.self) } == ["1", "2", "3", "4"])
        }
    }

    @Test("a second answer is ignored; a responder dropped unanswered answers 500")
    func exactlyOnce() throws {
        let secondAccepted = Mutex<Bool?>(nil)
        var router = Router()
        router.add(
            "GET", "/twice",
            deferred: { _ in
                .later { responder in
                    DispatchQueue.global().async {
                        responder.respond(Response(status: 201))
                        let accepted = responder.respond(Response(status: 202))
                        secondAccepted.withLock { $0 = accepted }
                    }
                }
            })
        router.add("GET", "/dropped", deferred: { _ in .later { _ in } })
        try withServer(router) { _, port in
            #expect(try send(port, "GET", "/twice").status == 201)
            try waitUntil(timeout: .seconds(5), "the second answer tried") { secondAccepted.withLock { $0 != nil } }
            #expect(secondAccepted.withLock { $0 } == false)
            let dropped = try send(port, "GET", "/dropped")
            #expect(dropped.status == 500)
            #expect(String(decoding: dropped.body, as: UTF8.self).contains("internal_error"))
        }
    }

    @Test("stop waits for an unanswered responder, and its answer still goes out")
    func stopWaitsForResponders() throws {
        let box = ResponderBox()
        var router = Router()
        router.add("GET", "/held", deferred: { _ in .later { box.keep($0) } })
        let server = HTTPServer(router: router, configuration: HTTPServer.Configuration(host: "127.0.0.1", port: 0))
        try server.start()
        let port = server.boundPort
        let client = Background { try send(port, "GET", "/held").status }
        try waitUntil(timeout: .seconds(5), "the request held") { box.count == 1 }
        let stopped = Background {
            server.stop(drainTimeout: .milliseconds(100))
            return true
        }
        // Past the drain timeout the server is still waiting: the connection is suspended on our responder.
        // (Checking that something has not happened needs a pause; 0.5 s is five drain timeouts.)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(!stopped.isFinished, "stop returned while a responder was unanswered")
        for (responder, _) in box.takeAll() { responder.respond(Response(status: 299)) }
        #expect(try stopped.value())
        #expect(try client.value() == 299)
    }
}
