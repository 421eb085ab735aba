import Curl
import Foundation
import Testing

@Suite("Curl requests: uploads, HEAD, statuses, reuse")
struct RequestTests {
    @Test("PUT from a file byte range sends exactly that range with the given headers and no Expect")
    func putFileRange() throws {
        let server = try TestHTTPServer { _ in Reply(status: 200, headers: [("ETag", "\"abc\"")]) }
        defer { server.stop() }
        let path = NSTemporaryDirectory() + "curl-put-\(UUID().uuidString)"
        let content = Pattern.bytes(0..<3_000_000)
        try Data(content).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }

        let request = CurlRequest(
            method: "PUT", url: server.baseURL + "/bucket/part?partNumber=2&uploadId=u",
            headers: [("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("Content-Type", "image/png")],
            body: .file(path: path, offset: 1234, length: 2_000_000))
        let response = try CurlSession().perform(request, options: localOptions())

        #expect(response.status == 200)
        #expect(response.headers["etag"] == "\"abc\"")
        let received = try #require(server.requests.first)
        #expect(received.method == "PUT")
        #expect(received.target == "/bucket/part?partNumber=2&uploadId=u")
        #expect(received.body == Array(content[1234..<(1234 + 2_000_000)]))
        #expect(received.header("Content-Length") == "2000000")
        #expect(received.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD")
        #expect(received.header("Content-Type") == "image/png")
        #expect(received.header("Expect") == nil)
    }

    @Test("PUT and POST from bytes send exactly those bytes", arguments: ["PUT", "POST"])
    func uploadBytes(method: String) throws {
        let server = try TestHTTPServer { _ in .text("stored") }
        defer { server.stop() }
        let bytes = Pattern.bytes(7..<(7 + 1_500_000))
        let response = try CurlSession().perform(
            CurlRequest(method: method, url: server.baseURL + "/object", headers: [("X-Meta", "v")], body: .bytes(bytes)),
            options: localOptions())
        #expect(response.status == 200)
        let received = try #require(server.requests.first)
        #expect(received.method == method)
        #expect(received.body == bytes)
        #expect(received.header("X-Meta") == "v")
        #expect(received.header("Expect") == nil)
        #expect(received.header("Content-Type") == nil, "libcurl adds no form content type")
    }

    @Test("a 307 redirect resends the PUT body to the new location")
    func putFollows307() throws {
        let server = try TestHTTPServer { request in
            request.target == "/old" ? .redirect(to: "/new", status: 307) : .text("stored")
        }
        defer { server.stop() }
        var options = localOptions()
        options.maxRedirects = 1
        let bytes = Pattern.bytes(0..<200_000)
        let response = try CurlSession().perform(
            CurlRequest(method: "PUT", url: server.baseURL + "/old", body: .bytes(bytes)),
            options: options)
        #expect(response.status == 200)
        #expect(server.requests.map(\.method) == ["PUT", "PUT"])
        #expect(server.requests.last?.target == "/new")
        #expect(server.requests.last?.body == bytes)
    }

    @Test("a bodiless PUT and POST send Content-Length: 0; DELETE sends no body")
    func emptyBodies() throws {
        let server = try TestHTTPServer { _ in Reply(status: 204) }
        defer { server.stop() }
        let session = CurlSession()
        for method in ["PUT", "POST", "DELETE"] {
            let response = try session.perform(CurlRequest(method: method, url: server.baseURL + "/x"), options: localOptions())
            #expect(response.status == 204)
        }
        let methods = server.requests.map(\.method)
        #expect(methods == ["PUT", "POST", "DELETE"])
        #expect(server.requests[0].header("Content-Length") == "0")
        #expect(server.requests[1].header("Content-Length") == "0")
    }

    @Test("an upload range past the end of the file is refused before connecting")
    func uploadRangeTooLong() throws {
        let server = try TestHTTPServer { _ in .text("no") }
        defer { server.stop() }
        let path = NSTemporaryDirectory() + "curl-short-\(UUID().uuidString)"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let request = CurlRequest(method: "PUT", url: server.baseURL, body: .file(path: path, offset: 2, length: 5))
        let error = curlError { () throws(CurlError) in try CurlSession().perform(request, options: localOptions()) }
        #expect(error?.code == .bodySourceFailed)
        #expect(server.connectionCount == 0)
    }

    @Test("HEAD returns status and headers without a body, and maxBytes does not apply to it")
    func head() throws {
        let server = try TestHTTPServer { _ in Reply(headers: [("Content-Type", "image/webp")], body: .pattern(count: 12_345)) }
        defer { server.stop() }
        var options = localOptions()
        options.maxBytes = 10
        let response = try CurlSession().perform(CurlRequest(method: "HEAD", url: server.baseURL + "/img"), options: options)
        #expect(response.status == 200)
        #expect(response.headers["Content-Length"] == "12345")
        #expect(response.headers["content-type"] == "image/webp")
        #expect(response.body.isEmpty)
        #expect(server.requests.first?.method == "HEAD")
    }

    @Test("a 404 is a response, not an error; with a sink its body stays out of the sink")
    func notFound() throws {
        let server = try TestHTTPServer { _ in .text("<Error><Code>NoSuchKey</Code></Error>", status: 404) }
        defer { server.stop() }
        let session = CurlSession()
        let collected = try session.perform(CurlRequest(url: server.baseURL + "/gone"), options: localOptions())
        #expect(collected.status == 404)
        #expect(collected.isSuccess == false)
        #expect(collected.body == Array("<Error><Code>NoSuchKey</Code></Error>".utf8))

        var sinkBytes = 0
        let streamed = try session.perform(CurlRequest(url: server.baseURL + "/gone"), options: localOptions()) { sinkBytes += $0.count }
        #expect(streamed.status == 404)
        #expect(sinkBytes == 0)
        #expect(streamed.body == collected.body)
        #expect(!streamed.bodyTruncated)
    }

    @Test("a large error body is cut at the error-body limit when streaming")
    func largeErrorBody() throws {
        let server = try TestHTTPServer { _ in Reply(status: 500, body: .pattern(count: 1 << 20)) }
        defer { server.stop() }
        var sinkBytes = 0
        let response = try CurlSession().perform(CurlRequest(url: server.baseURL), options: localOptions()) { sinkBytes += $0.count }
        #expect(response.status == 500)
        #expect(sinkBytes == 0)
        #expect(response.bodyTruncated)
        #expect(response.body == Pattern.bytes(0..<CurlSession.errorBodyLimit))
    }

    @Test("one session keeps its connection alive across requests")
    func connectionReuse() throws {
        let server = try TestHTTPServer { request in .text("answer to \(request.target)") }
        defer { server.stop() }
        let session = CurlSession()
        for index in 0..<3 {
            let response = try session.perform(CurlRequest(url: server.baseURL + "/\(index)"), options: localOptions())
            #expect(response.body == Array("answer to /\(index)".utf8))
        }
        #expect(server.requests.count == 3)
        #expect(server.connectionCount == 1)
        #expect(Set(server.requests.map(\.connection)) == [1])
    }
}
