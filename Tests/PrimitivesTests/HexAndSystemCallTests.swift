import Foundation
import Glibc
import Primitives
import Synchronization
import TestSupport
import Testing

@Suite("Hex")
struct HexTests {
    @Test func encodesEveryByteAsFoundationWould() {
        let all = (0...255).map(UInt8.init)
        #expect(Hex.encode(all) == all.map { String(format: "%02x", $0) }.joined())
        #expect(Hex.encode(all, uppercase: true) == all.map { String(format: "%02X", $0) }.joined())
        #expect(Hex.encode([]) == "")
    }

    @Test func decodesEitherCaseAndRefusesTheRest() {
        var rng = SplitMix64(seed: 16)
        for _ in 0..<200 {
            let bytes = (0..<rng.below(40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(Hex.decode(Hex.encode(bytes)) == bytes)
            #expect(Hex.decode(Hex.encode(bytes, uppercase: true)) == bytes)
        }
        #expect(Hex.decode("0aFf") == [0x0A, 0xFF])
        #expect(Hex.decode("0") == nil)
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.decode(" 0a") == nil)
        #expect(Hex.value(of: UInt8(ascii: "G")) == nil)
        #expect(Hex.value(of: UInt8(ascii: "/")) == nil)
        #expect(Hex.value(of: UInt8(ascii: ":")) == nil)
    }
}

@Suite("System calls")
struct SystemCallTests {
    @Test func aFailureCarriesItsOperationAndErrno() {
        let path = "/nonexistent-\(UUID().uuidString)/file"
        #expect(throws: SystemCallError("cannot open \(path)", errno: ENOENT)) {
            try systemCall("cannot open \(path)") { open(path, O_RDONLY) }
        }
        let error = SystemCallError("cannot open x", errno: ENOSPC)
        #expect(error.description == "cannot open x: No space left on device")
    }

    @Test func theOperationIsOnlyDescribedOnFailure() throws {
        var described = 0
        func operation() -> String {
            described += 1
            return "getpid"
        }
        #expect(try systemCall(operation()) { getpid() } > 0)
        #expect(described == 0)
    }

    /// A signal that interrupts a blocked read is retried, not reported: the read returns the byte written
    /// after the signals. (Without the retry the read fails with EINTR and `systemCall` throws.)
    @Test func anInterruptedCallIsRetried() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        // SIGUSR2 with a handler installed without SA_RESTART, so a blocked read really fails with EINTR.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        sigemptyset(&action.sa_mask)
        var previous = sigaction()
        #expect(sigaction(SIGUSR2, &action, &previous) == 0)
        defer { sigaction(SIGUSR2, &previous, nil) }

        let reader = Shared<(thread: pthread_t?, result: Result<Int, SystemCallError>?)>((nil, nil))
        let readFD = fds[0]
        Thread {
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            reader.withLock { $0.thread = pthread_self() }
            var byte: UInt8 = 0
            let result = Result { () throws(SystemCallError) -> Int in try systemCall("read") { read(readFD, &byte, 1) } }
            reader.withLock { $0.result = result }
        }.start()
        try waitUntil(timeout: .seconds(5), "the reader thread") { reader.withLock { $0.thread != nil } }
        let thread = reader.withLock { $0.thread! }
        // Interrupt it a few times while it waits in read(2), then give it its byte.
        for _ in 0..<5 {
            pthread_kill(thread, SIGUSR2)
            usleep(20_000)
        }
        #expect(reader.withLock { $0.result == nil }, "the read must still be waiting")
        var byte: UInt8 = 42
        #expect(write(fds[1], &byte, 1) == 1)
        try waitUntil(timeout: .seconds(5), "the read to return") { reader.withLock { $0.result != nil } }
        #expect(try reader.withLock { $0.result! }.get() == 1)
    }

    @Test func writeAllWritesEverythingOrSaysWhy() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let bytes = (0..<50_000).map { UInt8(truncatingIfNeeded: $0) }
        let drained = Shared<[UInt8]?>(nil)
        let readFD = fds[0]
        Thread {
            var all: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(readFD, &chunk, chunk.count)
                if n <= 0 { break }
                all += chunk[..<n]
            }
            drained.withLock { $0 = all }
        }.start()
        try bytes.withUnsafeBytes { try writeAll(fds[1], $0, "write to the pipe") }
        close(fds[1])
        try waitUntil(timeout: .seconds(10), "the reader to drain the pipe") { drained.withLock { $0 != nil } }
        #expect(drained.withLock { $0 } == bytes)

        #expect(throws: SystemCallError("write to a closed descriptor", errno: EBADF)) {
            try bytes.withUnsafeBytes { try writeAll(-1, $0, "write to a closed descriptor") }
        }
    }
}

/// A value threads share, behind a lock.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
}
