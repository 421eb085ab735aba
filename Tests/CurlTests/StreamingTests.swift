import Curl
import Foundation
import Synchronization
import TestSupport
import Testing

@Suite("Curl streaming and limits")
struct StreamingTests {
    @Test("a 20 MiB body streams into the sink byte for byte, in small chunks, while the server is still sending")
    func streamsLargeBody() throws {
        let size = 20 << 20
        let server = try TestHTTPServer { _ in Reply(body: .pattern(count: size)) }
        defer { server.stop() }

        var received = 0
        var mismatches = 0
        var largestChunk = 0
        var serverSentAtOneMiB: Int? = nil
        let response = try CurlSession().perform(CurlRequest(url: server.baseURL + "/big"), options: localOptions()) { chunk in
            largestChunk = max(largestChunk, chunk.count)
            for (index, byte) in chunk.enumerated() where byte != Pattern.byte(at: received + index) { mismatches += 1 }
            received += chunk.count
            if serverSentAtOneMiB == nil && received >= 1 << 20 { serverSentAtOneMiB = server.bodyBytesSent }
        }

        #expect(response.status == 200)
        #expect(received == size)
        #expect(response.bytesReceived == Int64(size))
        #expect(mismatches == 0)
        #expect(response.body.isEmpty, "a streamed 2xx body is not also collected")
        #expect(largestChunk <= 1 << 20, "libcurl hands over small chunks, not the whole body")
        let sentEarly = try #require(serverSentAtOneMiB)
        #expect(sentEarly < size, "the sink saw data before the server had finished: the body was not buffered")
    }

    @Test("maxBytes stops a body without Content-Length early; the server sees the connection drop")
    func maxBytesStopsUnannouncedBody() throws {
        let size = 64 << 20
        let server = try TestHTTPServer { _ in Reply(body: .pattern(count: size), length: .none) }
        defer { server.stop() }
        var options = localOptions()
        options.maxBytes = 1 << 20
        var received = 0

        let error = curlError { () throws(CurlError) in
            try CurlSession().perform(CurlRequest(url: server.baseURL + "/endless"), options: options) { received += $0.count }
        }

        #expect(error?.code == .tooLarge)
        #expect(received <= 1 << 20)
        try waitUntil(timeout: .seconds(20), "the server's reply to end") { server.outcomes.count == 1 }
        let outcome = try #require(server.outcomes.first)
        #expect(!outcome.completed)
        #expect(outcome.bodyBytesSent < size / 4, "sent \(outcome.bodyBytesSent) of \(size)")
    }

    @Test("a Content-Length over maxBytes fails before any body is read", arguments: [true, false])
    func announcedLengthOverLimit(streaming: Bool) throws {
        let server = try TestHTTPServer { _ in Reply(body: .stall(prefix: Pattern.bytes(0..<1024)), length: .declared(100 << 20)) }
        defer { server.stop() }
        var options = localOptions()
        options.maxBytes = 1 << 20
        var sinkCalls = 0
        let started = ContinuousClock.now

        let error = curlError { () throws(CurlError) in
            let request = CurlRequest(url: server.baseURL + "/huge")
            if streaming {
                return try CurlSession().perform(request, options: options) { _ in sinkCalls += 1 }
            }
            return try CurlSession().perform(request, options: options)
        }

        #expect(error?.code == .tooLarge)
        #expect(sinkCalls == 0)
        #expect(ContinuousClock.now - started < .seconds(5), "refused on the header, not after a stall")
    }

    @Test("the collecting perform caps bodies too")
    func collectingCap() throws {
        let server = try TestHTTPServer { _ in Reply(body: .pattern(count: 300_000)) }
        defer { server.stop() }
        var options = localOptions()
        options.maxBytes = 100_000
        #expect(
            curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL), options: options) }?.code == .tooLarge)
        options.maxBytes = 300_000
        let response = try CurlSession().perform(CurlRequest(url: server.baseURL), options: options)
        #expect(response.body == Pattern.bytes(0..<300_000))
    }

    @Test("a stalled server ends in a timeout through the low-speed limit")
    func stalledServerTimesOut() throws {
        let server = try TestHTTPServer { _ in Reply(body: .stall(prefix: Array("0123456789".utf8)), length: .declared(1000)) }
        defer { server.stop() }
        var options = localOptions()
        options.lowSpeedLimitBytesPerSecond = 100
        options.lowSpeedTime = .seconds(1)
        let started = ContinuousClock.now

        let error = curlError { () throws(CurlError) in
            try CurlSession().perform(CurlRequest(url: server.baseURL + "/slow"), options: options) { _ in }
        }

        #expect(error?.code == .timeout)
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("the total timeout bounds a transfer that trickles")
    func totalTimeout() throws {
        let server = try TestHTTPServer { _ in Reply(body: .stall(prefix: [1, 2, 3]), length: .declared(1000)) }
        defer { server.stop() }
        var options = localOptions()
        options.totalTimeout = .milliseconds(500)
        let error = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL), options: options) }
        #expect(error?.code == .timeout)
    }

    @Test("shouldAbort stops a running transfer")
    func shouldAbortStops() throws {
        let server = try TestHTTPServer { _ in Reply(body: .stall(prefix: Pattern.bytes(0..<100)), length: .declared(1 << 20)) }
        defer { server.stop() }
        let stop = Atomic<Bool>(false)
        var options = localOptions()
        options.shouldAbort = { stop.load(ordering: .relaxed) }
        let started = ContinuousClock.now

        let error = curlError { () throws(CurlError) in
            try CurlSession().perform(CurlRequest(url: server.baseURL + "/abort"), options: options) { _ in
                stop.store(true, ordering: .relaxed)
            }
        }

        #expect(error?.code == .aborted)
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("a throwing sink ends the transfer with sinkFailed and its error")
    func sinkFailure() throws {
        let server = try TestHTTPServer { _ in Reply(body: .pattern(count: 4 << 20)) }
        defer { server.stop() }
        let error = curlError { () throws(CurlError) in
            try CurlSession().perform(CurlRequest(url: server.baseURL), options: localOptions()) { _ in throw SinkStopped() }
        }
        #expect(error?.code == .sinkFailed)
        #expect(error?.sinkError is SinkStopped)
    }

    @Test("a body shorter than its Content-Length is an incompleteBody error")
    func contentLengthLie() throws {
        let server = try TestHTTPServer { _ in Reply(body: .bytes(Array("short".utf8)), length: .declared(1000)) }
        defer { server.stop() }
        let error = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL), options: localOptions()) }
        #expect(error?.code == .incompleteBody)
        #expect(error?.code.isTransient == true)
    }
}
