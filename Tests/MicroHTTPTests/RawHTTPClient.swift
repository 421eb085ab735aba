import Foundation
import Glibc
import Synchronization
import TestSupport

/// A deliberately tiny blocking HTTP/1.1 client over a raw socket, so tests control every byte:
/// chunked bodies, Content-Length values that lie, bodies never sent, connections dropped.
struct RawResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    var text: String { String(decoding: body, as: UTF8.self) }

    /// The `error.code` of a JSON error body.
    var errorCode: String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let error = object["error"] as? [String: Any]
        else { return nil }
        return error["code"] as? String
    }

    func json() throws -> [String: String] {
        try JSONDecoder().decode([String: String].self, from: Data(body))
    }
}

struct ClientError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1:port; throws with errno on refusal. Reads and writes time out after
    /// `timeout` so a broken server fails the test instead of hanging it.
    init(port: Int, timeout: Duration = .seconds(10)) throws {
        fd = try LoopbackSocket.connect(port: port, timeout: timeout)
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError("send: errno \(errno)") }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Sends `body` with chunked transfer encoding, in pieces of `chunkSize`, then the last chunk.
    func sendChunked(_ body: [UInt8], chunkSize: Int) throws {
        var offset = 0
        while offset < body.count {
            let end = min(offset + chunkSize, body.count)
            try send(Array(String(end - offset, radix: 16).utf8) + Array("\r\n".utf8) + Array(body[offset..<end]) + Array("\r\n".utf8))
            offset = end
        }
        try send("0\r\n\r\n")
    }

    /// Reads one response (skipping 1xx interim answers); the body is framed by Content-Length.
    func readResponse() throws -> RawResponse {
        while true {
            let head = try readHead()
            var lines = head.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst().split(separator: " ")
            guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
                throw ClientError("bad status line in \(head.prefix(80))")
            }
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            if status < 200 { continue }
            var response = RawResponse(status: status, headers: headers, body: [])
            if status == 204 || status == 304 { return response }  // no body by definition
            guard let length = response.header("Content-Length").flatMap({ Int($0) }) else {
                throw ClientError("response \(status) has no Content-Length")
            }
            while buffer.count < length {
                guard try fill() else { throw ClientError("connection closed inside a body") }
            }
            response.body = Array(buffer[..<length])
            buffer.removeFirst(length)
            return response
        }
    }

    /// Reads until the server closes; returns what arrived and the errno that ended it (nil: EOF).
    func readToEnd() -> (bytes: [UInt8], errno: Int32?) {
        var all = buffer
        buffer = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (all, nil) }
            if n < 0 { return (all, errno) }
            all.append(contentsOf: chunk[..<n])
        }
    }

    private func readHead() throws -> String {
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            if let range = findSubsequence(buffer, terminator) {
                let head = String(decoding: buffer[..<range], as: UTF8.self)
                buffer.removeFirst(range + terminator.count)
                return head
            }
            guard try fill() else { throw ClientError("connection closed before a response (\(buffer.count) bytes)") }
        }
    }

    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return false }
        guard n > 0 else { throw ClientError("recv: errno \(errno)") }
        buffer.append(contentsOf: chunk[..<n])
        return true
    }
}

private func findSubsequence(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
        return start
    }
    return nil
}

/// One request on a fresh connection (`Connection: close`), body framed by Content-Length.
func send(
    _ port: Int, _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil
) throws -> RawResponse {
    let connection = try RawConnection(port: port)
    var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if let body { head += "Content-Length: \(body.count)\r\n" }
    head += "\r\n"
    try connection.send(Array(head.utf8) + (body ?? []))
    return try connection.readResponse()
}
