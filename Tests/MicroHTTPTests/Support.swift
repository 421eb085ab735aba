import Foundation
import MicroHTTP
import Synchronization
import TestSupport

/// Starts a server on a kernel-chosen loopback port, runs `body`, and always stops it.
func withServer(
    _ router: Router, configure: (inout HTTPServer.Configuration) -> Void = { _ in },
    _ body: (HTTPServer, Int) throws -> Void
) throws {
    var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0)
    configure(&configuration)
    let server = HTTPServer(router: router, configuration: configuration)
    try server.start()
    defer { server.stop(drainTimeout: .seconds(2)) }
    try body(server, server.boundPort)
}

/// Counts handlers that arrived; lets them wait (with a deadline) until a condition holds.
final class Gate: Sendable {
    private let state = Mutex((arrived: 0, open: false))

    var arrived: Int { state.withLock { $0.arrived } }
    func open() { state.withLock { $0.open = true } }

    /// Registers arrival, then waits until `open()` or until `count` handlers arrived; false on timeout.
    func arriveAndWait(untilArrived count: Int = .max, timeout: Duration = .seconds(10)) -> Bool {
        state.withLock { $0.arrived += 1 }
        return
            (try? waitUntil(timeout: timeout, pollEvery: .milliseconds(5), "gate") {
                state.withLock { $0.open || $0.arrived >= count }
            }) != nil
    }
}

/// A counter handlers bump, to prove a handler was (or was not) called.
final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// FNV-1a, 64 bit: a small hash both sides of an echo can compute without a crypto dependency.
func fnv1a(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01B3
    }
    return String(hash, radix: 16)
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
func testBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

/// A handler that echoes the body and reports its hash and length in headers.
let echoHandler: Handler = { request in
    Response(
        status: 200, headers: [("X-Body-Hash", fnv1a(request.body)), ("X-Body-Length", String(request.body.count))],
        body: request.body)
}
