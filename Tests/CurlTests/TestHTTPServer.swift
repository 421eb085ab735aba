import Foundation
import Glibc
import Synchronization
import TestSupport

/// A request as the test server received it.
struct RecordedRequest: Sendable {
    let connection: Int
    let method: String
    let target: String
    let headers: [(String, String)]
    let body: [UInt8]

    func header(_ name: String) -> String? { headers.last { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// What the test server answers.
struct Reply: Sendable {
    enum Body: Sendable {
        case bytes([UInt8])
        /// `count` bytes of `Pattern`, written in 64 KiB chunks as fast as the client takes them.
        case pattern(count: Int)
        /// Sends `prefix`, then nothing more until the client goes away.
        case stall(prefix: [UInt8])
    }
    enum Length: Sendable {
        /// Content-Length matches the body; the connection stays open for the next request.
        case exact
        /// No Content-Length: the body ends when the server closes the connection.
        case none
        /// Announces this Content-Length whatever the body is, then closes.
        case declared(Int)
    }

    var status = 200
    var headers: [(String, String)] = []
    var body: Body = .bytes([])
    var length: Length = .exact

    static func text(_ text: String, status: Int = 200) -> Reply {
        Reply(status: status, headers: [("Content-Type", "text/plain")], body: .bytes(Array(text.utf8)))
    }
    static func redirect(to location: String, status: Int = 302) -> Reply {
        Reply(status: status, headers: [("Location", location)], body: .bytes(Array("moved".utf8)))
    }
}

/// How the server's answer to one request ended.
struct ReplyOutcome: Sendable {
    let target: String
    let bodyBytesSent: Int
    let completed: Bool
}

/// Deterministic test bytes: a table with a prime period, so shifted or repeated blocks do not match.
enum Pattern {
    static let period = 65_521
    static let table: [UInt8] = (0..<period).map { UInt8(truncatingIfNeeded: ($0 &* 7919) ^ ($0 >> 7)) }
    static func byte(at index: Int) -> UInt8 { table[index % period] }
    static func bytes(_ range: Range<Int>) -> [UInt8] { range.map(byte(at:)) }
}

/// A small HTTP/1.1 server on 127.0.0.1 for tests: raw sockets, a thread per connection, keep-alive,
/// scripted replies from `handler`, and a record of every connection, request and reply outcome.
final class TestHTTPServer: Sendable {
    private struct State {
        var connections = 0
        var requests: [RecordedRequest] = []
        var outcomes: [ReplyOutcome] = []
        var bodyBytesSent = 0
        var stopped = false
    }

    let port: Int
    private let listener: Int32
    private let handler: @Sendable (RecordedRequest) -> Reply
    private let state = Mutex(State())

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var connectionCount: Int { state.withLock { $0.connections } }
    var requests: [RecordedRequest] { state.withLock { $0.requests } }
    var outcomes: [ReplyOutcome] { state.withLock { $0.outcomes } }
    /// Body bytes written so far, over all replies (read while a transfer runs).
    var bodyBytesSent: Int { state.withLock { $0.bodyBytesSent } }

    init(_ handler: @escaping @Sendable (RecordedRequest) -> Reply) throws {
        self.handler = handler
        (listener, port) = try LoopbackSocket.listening()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting and ends stalled replies; call it from `defer`.
    func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    private func acceptLoop() {
        while !isStopped {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            let number = state.withLock { state -> Int in
                state.connections += 1
                return state.connections
            }
            Thread.detachNewThread { [self] in serve(connection, number: number) }
        }
    }

    private func serve(_ fd: Int32, number: Int) {
        defer { close(fd) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var pending: [UInt8] = []
        for _ in 0..<100 {
            guard let request = readRequest(fd, connection: number, pending: &pending) else { return }
            state.withLock { $0.requests.append(request) }
            guard write(handler(request), for: request, to: fd) else { return }
        }
    }

    // MARK: reading

    private func readRequest(_ fd: Int32, connection: Int, pending: inout [UInt8]) -> RecordedRequest? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int? = nil
        while headEnd == nil {
            headEnd = pending.firstRange(of: separator)?.lowerBound
            if headEnd == nil {
                guard pending.count < 64 << 10, receive(fd, into: &pending) else { return nil }
            }
        }
        let head = String(decoding: pending[..<headEnd!], as: UTF8.self)
        pending.removeFirst(headEnd! + separator.count)
        let lines = head.components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count == 3 else { return nil }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.last { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        guard length <= 64 << 20 else { return nil }
        while pending.count < length {
            guard receive(fd, into: &pending) else { return nil }
        }
        let body = Array(pending.prefix(length))
        pending.removeFirst(length)
        return RecordedRequest(
            connection: connection, method: String(requestLine[0]), target: String(requestLine[1]),
            headers: headers, body: body)
    }

    private func receive(_ fd: Int32, into buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        buffer.append(contentsOf: chunk[..<count])
        return true
    }

    // MARK: writing

    /// Writes the reply; returns whether the connection may carry another request.
    private func write(_ reply: Reply, for request: RecordedRequest, to fd: Int32) -> Bool {
        let bodyLength: Int
        switch reply.body {
        case .bytes(let bytes): bodyLength = bytes.count
        case .pattern(let count): bodyLength = count
        case .stall(let prefix): bodyLength = prefix.count
        }
        var head = "HTTP/1.1 \(reply.status) \(reply.status < 400 ? "OK" : "Error")\r\n"
        for (name, value) in reply.headers { head += "\(name): \(value)\r\n" }
        var keepAlive = true
        switch reply.length {
        case .exact: head += "Content-Length: \(bodyLength)\r\n"
        case .none:
            head += "Connection: close\r\n"
            keepAlive = false
        case .declared(let declared):
            head += "Content-Length: \(declared)\r\nConnection: close\r\n"
            keepAlive = false
        }
        head += "\r\n"
        guard sendAll(fd, Array(head.utf8)) else { return false }
        if request.method == "HEAD" {
            state.withLock { $0.outcomes.append(ReplyOutcome(target: request.target, bodyBytesSent: 0, completed: true)) }
            return keepAlive
        }
        var sent = 0
        var completed = true
        switch reply.body {
        case .bytes(let bytes):
            completed = sendAll(fd, bytes, counting: &sent)
        case .pattern(let count):
            while sent < count && completed {
                completed = sendAll(fd, Pattern.bytes(sent..<min(count, sent + (64 << 10))), counting: &sent)
            }
        case .stall(let prefix):
            _ = sendAll(fd, prefix, counting: &sent)
            waitForPeerToLeave(fd)
            completed = false
            keepAlive = false
        }
        let outcome = ReplyOutcome(target: request.target, bodyBytesSent: sent, completed: completed)
        state.withLock { $0.outcomes.append(outcome) }
        return keepAlive && completed
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var ignored = 0
        return sendAll(fd, bytes, counting: &ignored, isBody: false)
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8], counting sent: inout Int, isBody: Bool = true) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            offset += count
            sent += count
            if isBody { state.withLock { $0.bodyBytesSent += count } }
        }
        return true
    }

    /// Holds a stalled reply open until the client closes (bounded: 30 s, or until `stop`).
    private func waitForPeerToLeave(_ fd: Int32) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<300 where !isStopped {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { return }
            if poller.revents != 0 {
                let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { return }
            }
        }
    }
}

struct TestServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
