import Foundation
import Glibc
import MicroHTTP
import Synchronization
import TestSupport
import Testing

/// A gate that admits only requests carrying `X-Key: good`, with a check that refuses bodies containing "bad".
private let keyGate: RequestGate = { head in
    guard head.header("x-key") == "good" else {
        return .refuse(.error(status: 401, code: "unauthenticated", message: "no key"))
    }
    return .admit(ForbiddenWordCheck())
}

/// Refuses a body in which "bad" appears, looking at it only piece by piece as it arrives.
private final class ForbiddenWordCheck: BodyCheck {
    private var tail: [UInt8] = []
    private var found = false
    private(set) var seen = 0

    func update(_ bytes: UnsafeRawBufferPointer) {
        seen += bytes.count
        let window = tail + Array(bytes)
        if !found, window.count >= 3 {
            for start in 0...(window.count - 3) where window[start] == 98 && window[start + 1] == 97 && window[start + 2] == 100 {
                found = true
            }
        }
        tail = Array(window.suffix(2))
    }

    func finish() -> Response? {
        found ? .error(status: 403, code: "forbidden_word", message: "the body says bad") : nil
    }
}

/// Waits until the server closes `connection` (EOF or reset) while `feed` is called every `interval` to
/// send it something; returns how long that took, or nil if it stayed open until `limit`.
private func timeUntilClosed(
    _ connection: RawConnection, every interval: Duration, limit: Duration,
    feed: () -> [UInt8]
) -> Duration? {
    let clock = ContinuousClock()
    let started = clock.now
    while clock.now - started < limit {
        let bytes = feed()
        if !bytes.isEmpty, (try? connection.send(bytes)) == nil { return clock.now - started }
        var descriptor = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000)
        if poll(&descriptor, 1, milliseconds) > 0 {
            var byte: UInt8 = 0
            let n = recv(connection.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { return clock.now - started }
        }
    }
    return nil
}

final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

@Suite("Route gates: refusing before the body")
struct GateTests {
    @Test("a refused gate is answered before any body byte is sent, and the handler never runs")
    func refusedBeforeBody() throws {
        let calls = Counter()
        var router = Router()
        router.add("POST", "/hook", maxBodyBytes: 64 << 20, gate: keyGate) { _ in
            calls.increment()
            return Response(status: 200)
        }
        try withServer(router) { server, port in
            // Headers only, 60 MiB declared: a server that waited for the body would time the client out.
            let connection = try RawConnection(port: port, timeout: .seconds(5))
            try connection.send("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 62914560\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 401)
            #expect(response.errorCode == "unauthenticated")

            // With Expect: 100-continue the client is told 401 instead of "go ahead".
            let expecting = try RawConnection(port: port, timeout: .seconds(5))
            try expecting.send("POST /hook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 62914560\r\n\r\n")
            let (bytes, _) = expecting.readToEnd()
            #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 401"))
            #expect(calls.count == 0)
            #expect(server.inFlightBodyBytes == 0, "a refused request takes nothing from the body budget")
        }
    }

    @Test("the body check sees every byte; a refused body never reaches the handler")
    func bodyCheck() throws {
        let calls = Counter()
        var router = Router()
        router.add("POST", "/hook", maxBodyBytes: 1 << 20, gate: keyGate) { request in
            calls.increment()
            return Response(status: 200, headers: [("X-Body-Hash", fnv1a(request.body))])
        }
        try withServer(router) { _, port in
            var body = [UInt8](repeating: UInt8(ascii: "a"), count: 300_000)
            let good = try send(port, "POST", "/hook", headers: [("X-Key", "good")], body: body)
            #expect(good.status == 200)
            #expect(good.header("X-Body-Hash") == fnv1a(body))
            #expect(calls.count == 1)

            body.replaceSubrange(200_000..<200_003, with: Array("bad".utf8))
            let refused = try send(port, "POST", "/hook", headers: [("X-Key", "good")], body: body)
            #expect(refused.status == 403)
            #expect(refused.errorCode == "forbidden_word")
            #expect(calls.count == 1)
        }
    }
}

@Suite("The body budget across connections")
struct BodyBudgetTests {
    @Test("a request that does not fit the budget is told 503 with Retry-After before its body; room returns when requests end")
    func declaredLengthOverBudget() throws {
        let calls = Counter()
        var router = Router()
        router.add("POST", "/upload", maxBodyBytes: 1 << 20) { request in
            calls.increment()
            return Response(status: 200, headers: [("X-Body-Length", String(request.body.count))])
        }
        try withServer(router, configure: { $0.maxInflightBodyBytes = 100_000 }) { server, port in
            // A holds 80 kB of the 100 kB budget while its body trickles in.
            let holder = try RawConnection(port: port)
            try holder.send(Array("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 80000\r\nConnection: close\r\n\r\n".utf8) + testBytes(10))
            try waitUntil(timeout: .seconds(5), "the first body reserved") { server.inFlightBodyBytes == 80_000 }

            let refused = try send(port, "POST", "/upload", body: testBytes(50_000))
            #expect(refused.status == 503)
            #expect(refused.errorCode == "server_busy")
            #expect(refused.header("Retry-After") == "5")
            #expect(try send(port, "POST", "/upload", body: testBytes(20_000)).status == 200, "what fits is served")

            try holder.send(testBytes(80_000 - 10))
            #expect(try holder.readResponse().status == 200)
            try waitUntil(timeout: .seconds(5), "the budget returned") { server.inFlightBodyBytes == 0 }
            let retried = try send(port, "POST", "/upload", body: testBytes(50_000))
            #expect(retried.status == 200)
            #expect(retried.header("X-Body-Length") == "50000")
            #expect(calls.count == 3, "the 20 kB request, the holder and the retry; never the refused one")
        }
    }

    @Test("a chunked body that outgrows the budget is dropped as it arrives and answered 503")
    func chunkedOverBudget() throws {
        let calls = Counter()
        var router = Router()
        router.add("POST", "/upload", maxBodyBytes: 1 << 20) { _ in
            calls.increment()
            return Response(status: 200)
        }
        try withServer(router, configure: { $0.maxInflightBodyBytes = 10_000 }) { server, port in
            let connection = try RawConnection(port: port)
            try connection.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            try connection.sendChunked(testBytes(50_000), chunkSize: 1000)
            let response = try connection.readResponse()
            #expect(response.status == 503)
            #expect(response.header("Retry-After") != nil)
            #expect(calls.count == 0)
            try waitUntil(timeout: .seconds(5), "the budget returned") { server.inFlightBodyBytes == 0 }
        }
    }
}

@Suite("Large bodies spill to disk")
struct SpillTests {
    @Test("a body over the threshold waits in an unnamed file and reaches blocking and deferred handlers intact")
    func spilledBodyIntact() throws {
        let directory = NSTemporaryDirectory() + "microhttp-spill-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var router = Router()
        router.add("POST", "/echo", maxBodyBytes: 4 << 20, echoHandler)
        router.add("POST", "/deferred", maxBodyBytes: 4 << 20, deferred: { request in .now(try echoHandler(request)) })
        try withServer(
            router,
            configure: {
                $0.bodySpillDirectory = directory
                $0.bodySpillThresholdBytes = 4096
            }
        ) { _, port in
            let body = testBytes(3 << 20, seed: 11)
            for path in ["/echo", "/deferred"] {
                let response = try send(port, "POST", path, body: body)
                #expect(response.status == 200)
                #expect(response.header("X-Body-Hash") == fnv1a(body))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty, "spill files have no name")
        }
    }

    @Test("a route that takes bodies as files gets a spilled body as its file, read in pieces, and a small one as bytes")
    func bodyAsFile() throws {
        let directory = NSTemporaryDirectory() + "microhttp-spill-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var router = Router()
        router.add("POST", "/file", maxBodyBytes: 4 << 20, bodyAsFile: true) { request in
            guard let file = request.bodyFile else {
                return Response(status: 200, headers: [("X-Kind", "bytes"), ("X-Body-Hash", fnv1a(request.body))])
            }
            // Read back in odd-sized pieces with pread, as a streaming handler would.
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_537)
            var offset = 0
            while true {
                let n = (try? buffer.withUnsafeMutableBytes { try file.read(at: offset, into: $0) }) ?? -1
                guard n > 0 else { break }
                bytes += buffer[0..<n]
                offset += n
            }
            return Response(
                status: 200,
                headers: [
                    ("X-Kind", "file"), ("X-Body-Hash", fnv1a(bytes)), ("X-Size", String(file.size)),
                    ("X-Body-Empty", String(request.body.isEmpty)), ("X-Count", String(request.bodyCount)),
                ])
        }
        try withServer(
            router,
            configure: {
                $0.bodySpillDirectory = directory
                $0.bodySpillThresholdBytes = 4096
            }
        ) { _, port in
            let large = testBytes(3 << 20, seed: 5)
            let answer = try send(port, "POST", "/file", body: large)
            #expect(answer.status == 200)
            #expect(answer.header("X-Kind") == "file")
            #expect(answer.header("X-Body-Hash") == fnv1a(large))
            #expect(answer.header("X-Size") == String(large.count))
            #expect(answer.header("X-Count") == String(large.count))
            #expect(answer.header("X-Body-Empty") == "true")
            let small = testBytes(1000, seed: 6)
            let smallAnswer = try send(port, "POST", "/file", body: small)
            #expect(smallAnswer.header("X-Kind") == "bytes")
            #expect(smallAnswer.header("X-Body-Hash") == fnv1a(small))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty, "spill files have no name")
        }
    }

    @Test("a spill directory that cannot be written is a 503 for large bodies, not a crash; small ones are served")
    func unwritableSpill() throws {
        var router = Router()
        router.add("POST", "/echo", maxBodyBytes: 4 << 20, echoHandler)
        let missing = NSTemporaryDirectory() + "microhttp-no-such-dir-\(UUID().uuidString)"
        try withServer(
            router,
            configure: {
                $0.bodySpillDirectory = missing
                $0.bodySpillThresholdBytes = 4096
            }
        ) { server, port in
            let large = try send(port, "POST", "/echo", body: testBytes(100_000))
            #expect(large.status == 503)
            #expect(large.errorCode == "body_storage_unavailable")
            #expect(large.header("Retry-After") != nil)
            #expect(try send(port, "POST", "/echo", body: testBytes(4000)).status == 200)
            try waitUntil(timeout: .seconds(5), "the budget returned") { server.inFlightBodyBytes == 0 }
        }
    }
}

@Suite("Deadlines for slow clients")
struct DeadlineTests {
    @Test("a head sent a byte at a time is cut off at the header deadline, long before the idle timeout")
    func slowHead() throws {
        var router = Router()
        router.add("GET", "/") { _ in Response(status: 200) }
        try withServer(
            router,
            configure: {
                $0.connectionTimeoutSeconds = 60
                $0.headerTimeoutSeconds = 1
                $0.requestTimeoutSeconds = 3
            }
        ) { server, port in
            let connection = try RawConnection(port: port)
            var sent = 0
            let head = Array("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8)
            let elapsed = timeUntilClosed(connection, every: .milliseconds(200), limit: .seconds(8)) {
                defer { sent += 1 }
                return sent < head.count ? [head[sent]] : [UInt8(ascii: "a")]
            }
            #expect(elapsed != nil, "the connection stayed open")
            if let elapsed { #expect(elapsed < .seconds(4), "closed after \(elapsed)") }
            #expect(server.connectionsPastDeadline >= 1, "closed after \(String(describing: elapsed)), sent \(sent)")
        }
    }

    @Test("a body sent a byte at a time is cut off at the request deadline; the request is released")
    func slowBody() throws {
        let calls = Counter()
        var router = Router()
        router.add("POST", "/upload") { _ in
            calls.increment()
            return Response(status: 200)
        }
        try withServer(
            router,
            configure: {
                $0.connectionTimeoutSeconds = 60
                $0.headerTimeoutSeconds = 1
                $0.requestTimeoutSeconds = 2
            }
        ) { server, port in
            let connection = try RawConnection(port: port)
            try connection.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            let elapsed = timeUntilClosed(connection, every: .milliseconds(200), limit: .seconds(8)) { [UInt8(ascii: "b")] }
            #expect(elapsed != nil, "the connection stayed open")
            if let elapsed { #expect(elapsed < .seconds(5)) }
            try waitUntil(timeout: .seconds(5), "request released") { server.inFlightRequests == 0 && server.inFlightBodyBytes == 0 }
            #expect(calls.count == 0)
        }
    }

    @Test("with every slot held by slow senders, a normal request is still answered once their deadline passes")
    func slowSendersDoNotHoldTheServer() throws {
        var router = Router()
        router.add("GET", "/") { _ in Response(status: 200, body: Array("ok".utf8)) }
        try withServer(
            router,
            configure: {
                $0.connectionLimit = 8
                $0.eventThreads = 2
                $0.connectionTimeoutSeconds = 60
                $0.headerTimeoutSeconds = 1
                $0.requestTimeoutSeconds = 2
            }
        ) { server, port in
            let stop = StopFlag()
            let slow = (0..<12).map { _ in
                Background<Void> {
                    // A slow sender that reconnects whenever it is cut off, for as long as the test runs.
                    while !stop.isSet {
                        guard let connection = try? RawConnection(port: port, timeout: .seconds(1)) else { continue }
                        _ = timeUntilClosed(connection, every: .milliseconds(300), limit: .seconds(20)) {
                            stop.isSet ? [] : [UInt8(ascii: "G")]
                        }
                        if stop.isSet { return }
                    }
                }
            }
            defer {
                stop.set()
                for worker in slow { _ = try? worker.value(timeout: .seconds(30)) }
            }
            try waitUntil(timeout: .seconds(5), "slow senders hold every slot") { server.openConnections == 8 }
            let started = ContinuousClock.now
            let response = try send(port, "GET", "/")
            #expect(response.status == 200)
            #expect(ContinuousClock.now - started < .seconds(8))
            #expect(server.connectionsPastDeadline >= 1, "the slots were freed by the deadline, not by the senders")
        }
    }

    @Test("the per-address limit closes connections past it at once")
    func perAddressLimit() throws {
        var router = Router()
        router.add("GET", "/") { _ in Response(status: 200) }
        try withServer(router, configure: { $0.perIPConnectionLimit = 2 }) { _, port in
            let first = try RawConnection(port: port)
            let second = try RawConnection(port: port)
            let third = try RawConnection(port: port, timeout: .seconds(5))
            let started = ContinuousClock.now
            let (bytes, _) = third.readToEnd()
            #expect(bytes.isEmpty)
            #expect(ContinuousClock.now - started < .seconds(4), "closed by the server, not by our receive timeout")
            try first.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(try first.readResponse().status == 200)
            _ = first.readToEnd()
            _ = second
            try waitUntil(timeout: .seconds(5), "a slot freed") { (try? send(port, "GET", "/"))?.status == 200 }
        }
    }

    @Test("limits out of range are refused at start, with the ranges the configuration loader uses")
    func ranges() throws {
        for configure in [
            { (c: inout HTTPServer.Configuration) in c.connectionLimit = 100_000 },
            { (c: inout HTTPServer.Configuration) in
                c.headerTimeoutSeconds = 40
                c.requestTimeoutSeconds = 30
            },
            { (c: inout HTTPServer.Configuration) in c.perIPConnectionLimit = -1 },
            { (c: inout HTTPServer.Configuration) in c.maxInflightBodyBytes = 0 },
        ] {
            var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
            configure(&configuration)
            let server = HTTPServer(router: Router(), configuration: configuration)
            #expect(throws: HTTPServerError.self) { try server.start() }
        }
        #expect(!HTTPServer.Configuration.connectionLimitRange.contains(100_000))
    }
}
