import Afterimage
import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

/// The real binary under abuse from unauthenticated clients: large bodies without (or with forged)
/// signatures, and slow senders holding connections. Issue 13, points 1–3 and 7.
@Suite("HTTP under abuse (real binary)", .serialized)
struct HTTPAbuseTests {
    /// Resident and peak resident memory of a process, from /proc (kB → bytes).
    static func memory(of pid: Int32) throws -> (rss: Int, peak: Int) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS, so the peak of one trial can be read.
    static func resetPeak(of pid: Int32) throws {
        try "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    /// 24 clients each send a 60 MiB body to the Stability route (64 MiB limit) at once: half without any
    /// signature headers, half with well-formed, fresh, forged ones. The unsigned are refused 401 before
    /// their body is read; the forged take the body budget in turn (a refused one gets 503 + Retry-After
    /// before its body) and are refused 401 once their bytes have streamed through the HMAC. The daemon's
    /// peak resident memory stays well under 128 MiB above idle, and nothing is written.
    @Test func largeUnauthenticatedBodiesDoNotGrowTheDaemon() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: [
            "AFTERIMAGE_STABILITY_WEBHOOK_SECRET": harness.secret, "AFTERIMAGE_WORKERS_COUNT": "0",
            "AFTERIMAGE_LOG_LEVEL": "warning",
        ])
        let pid = daemon.process.processIdentifier
        let idle = try Self.memory(of: pid).rss
        try Self.resetPeak(of: pid)

        let body = SharedBody(count: 60 << 20)
        let timestamp = String(Int64(Date().timeIntervalSince1970))
        let clients = (0..<24).map { index in
            Background<BigPost.Outcome> {
                var headers = [("Content-Type", "application/json")]
                if index % 2 == 1 {
                    headers += [
                        ("webhook-id", "msg_forged_\(index)"), ("webhook-timestamp", timestamp),
                        ("webhook-signature", "v1," + Data(repeating: UInt8(index), count: 32).base64EncodedString()),
                    ]
                }
                return try BigPost.send(port: daemon.port, path: "/v1/webhooks/stability", headers: headers, body: body)
            }
        }
        let outcomes = try clients.map { try $0.value(timeout: .seconds(240)) }
        let peak = try Self.memory(of: pid).peak
        let growth = peak - idle
        print("idle RSS \(idle >> 20) MiB, peak RSS \(peak >> 20) MiB, growth \(growth >> 20) MiB")

        for (index, outcome) in outcomes.enumerated() where index % 2 == 0 {
            #expect(outcome.status == 401, "unsigned client \(index): \(outcome)")
            #expect(outcome.bodyBytesSent < 16 << 20, "unsigned client \(index) was answered only after sending \(outcome.bodyBytesSent) bytes")
        }
        let forged = outcomes.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        #expect(forged.allSatisfy { [401, 503].contains($0.status) }, "\(forged)")
        #expect(forged.contains { $0.status == 503 && $0.retryAfter != nil }, "the body budget (256 MiB) refused none of 12 × 60 MiB")
        #expect(forged.contains { $0.status == 401 }, "no forged body was read and refused")
        #expect(growth < 96 << 20, "peak RSS grew by \(growth >> 20) MiB above idle")
        #expect(try harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: harness.spoolDirectory).isEmpty, "nothing left in the spool")
        #expect(try daemon.stop() == 0)
    }

    /// 300 connections that each send a header byte every 2 s (reconnecting whenever they are cut off)
    /// more than fill the default connection limit (256); a genuine signed webhook is still accepted
    /// within 30 s, because the header deadline (10 s) frees their slots.
    @Test func signedWebhookIsAcceptedWhileSlowConnectionsHoldTheServer() throws {
        let harness = try ArchiveHarness()
        let daemon = try harness.startDaemon(extra: ["AFTERIMAGE_WORKERS_COUNT": "0", "AFTERIMAGE_LOG_LEVEL": "warning"])
        let slow = SlowSenders(port: daemon.port, count: 300, interval: .seconds(2))
        defer { slow.stop() }
        try waitUntil(timeout: .seconds(20), "300 slow connections open") { slow.opened >= 300 }

        let id = "slow\(UUID().uuidString.prefix(6).lowercased())"
        let started = ContinuousClock.now
        let response = try harness.post(harness.prediction(id: id, output: nil), to: daemon)
        let elapsed = ContinuousClock.now - started
        print("signed webhook answered \(response.status) after \(elapsed) with 300 slow connections open")
        #expect(response.status == 200)
        #expect(elapsed < .seconds(30))
        try waitUntil(timeout: .seconds(10), "the slow senders to find their connections closed by the server") { slow.cutOff > 0 }
        #expect(try harness.scalar("SELECT count(*) FROM predictions WHERE id = $1", [id], as: Int.self) == 1)
        slow.stop()
        #expect(try daemon.stop() == 0)
    }

    /// /readyz's 503 names only the dependency that failed; the driver's message (bucket, endpoint, key id,
    /// S3 error code) goes to the log.
    @Test func readinessFailureSaysOnlyWhichDependency() throws {
        let harness = try ArchiveHarness()
        let port = freePort()
        let daemon = try DaemonProcess(
            environment: harness.environment(
                port: port,
                extra: [
                    "AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY": "definitely-the-wrong-secret", "AFTERIMAGE_WORKERS_COUNT": "0",
                ]), port: port)
        let answer = try daemon.waitForStatus("/readyz", 503)
        let body = String(decoding: answer.body, as: UTF8.self)
        let object = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
        let error = object?["error"] as? [String: String]
        #expect(error?["code"] == "not_ready")
        #expect(error?["message"] == "not ready: storage: unavailable", "\(body)")
        #expect(object?["checks"] as? [String: String] == ["database": "ok", "storage": "unavailable"], "\(body)")
        let endpoint = URL(string: harness.s3.endpoint)!
        for leak in [harness.s3.bucket, endpoint.host!, String(endpoint.port!), harness.s3.accessKeyID, "SignatureDoesNotMatch", "403"] {
            #expect(!body.contains(leak), "the answer shows \(leak): \(body)")
        }
        try waitUntil(timeout: .seconds(5), "the detail logged") { daemon.log.contains("not ready") && daemon.log.contains("storage") }
        #expect(try daemon.stop() == 0)
    }
}

/// One body shared by every client thread (60 MiB once, not 24 times in the test process).
final class SharedBody: Sendable {
    let bytes: [UInt8]
    init(count: Int) {
        var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: count)
        bytes[0] = UInt8(ascii: "{")
        self.bytes = bytes
    }
}

/// A raw-socket POST that sends its body in pieces and stops as soon as the server has answered, so a
/// refusal before the body is seen as such (curl would insist on sending the body).
enum BigPost {
    struct Outcome: Sendable, CustomStringConvertible {
        var status: Int
        var retryAfter: String?
        var bodyBytesSent: Int
        var description: String { "\(status) after \(bodyBytesSent) body bytes" }
    }

    static func send(port: Int, path: String, headers: [(String, String)], body: SharedBody) throws -> Outcome {
        let fd = try LoopbackSocket.connect(port: port, timeout: .seconds(60))
        defer { close(fd) }
        var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.bytes.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        guard sendAll(fd, Array(head.utf8)[...]) else { throw TestSupportError("could not send the head") }
        var sent = 0
        let piece = 1 << 20
        while sent < body.bytes.count {
            if answered(fd) { break }
            let end = min(sent + piece, body.bytes.count)
            guard sendAll(fd, body.bytes[sent..<end]) else { break }  // the server answered and closed
            sent = end
        }
        let response = readAll(fd)
        guard let line = response.split(separator: "\r\n").first, line.hasPrefix("HTTP/1."),
            let status = Int(line.split(separator: " ")[1])
        else {
            throw TestSupportError("no HTTP answer after \(sent) body bytes: \(response.prefix(200))")
        }
        let retryAfter = response.split(separator: "\r\n").first { $0.lowercased().hasPrefix("retry-after:") }
            .map { String($0.dropFirst("retry-after:".count)).trimmingCharacters(in: .whitespaces) }
        return Outcome(status: status, retryAfter: retryAfter, bodyBytesSent: sent)
    }

    /// True when the server has sent something (its answer) or closed.
    private static func answered(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    private static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    private static func readAll(_ fd: Int32) -> String {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            all.append(contentsOf: chunk[..<n])
        }
        return String(decoding: all, as: UTF8.self)
    }
}

/// `count` connections that each send one byte of a request head every `interval`, reconnecting whenever
/// the server cuts them off, on one thread of their own, until `stop()`.
final class SlowSenders: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let openedCount = Atomic<Int>(0)
    private let cutOffCount = Atomic<Int>(0)
    private let done = Mutex(false)

    /// Connections opened (first time and reconnections).
    var opened: Int { openedCount.load(ordering: .relaxed) }
    /// Connections found closed by the server.
    var cutOff: Int { cutOffCount.load(ordering: .relaxed) }

    init(port: Int, count: Int, interval: Duration) {
        let thread = Thread { [self] in
            let head = Array("POST /v1/webhooks/replicate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8)
            var sockets = [Int32](repeating: -1, count: count)
            var progress = [Int](repeating: 0, count: count)
            defer { for socket in sockets where socket >= 0 { close(socket) } }
            while !stopping.load(ordering: .relaxed) {
                for index in 0..<count where !stopping.load(ordering: .relaxed) {
                    if sockets[index] < 0 {
                        guard let fd = try? LoopbackSocket.connect(port: port, timeout: .seconds(1)) else { continue }
                        sockets[index] = fd
                        progress[index] = 0
                        openedCount.add(1, ordering: .relaxed)
                    }
                    let byte = progress[index] < head.count ? head[progress[index]] : UInt8(ascii: "a")
                    var buffer = byte
                    var peek: UInt8 = 0
                    let closed = recv(sockets[index], &peek, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
                    if closed || Glibc.send(sockets[index], &buffer, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) != 1 {
                        close(sockets[index])
                        sockets[index] = -1
                        cutOffCount.add(1, ordering: .relaxed)
                        continue
                    }
                    progress[index] += 1
                }
                let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
                var slept = 0.0
                while slept < seconds, !stopping.load(ordering: .relaxed) {
                    Thread.sleep(forTimeInterval: 0.1)  // the attack's pace, not a synchronisation
                    slept += 0.1
                }
            }
            done.withLock { $0 = true }
        }
        thread.start()
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        try? waitUntil(timeout: .seconds(30), "slow senders stopped") { done.withLock { $0 } }
    }
}
