import Curl
import TestSupport
import Testing

@Suite("Curl guards: addresses, protocols, redirects")
struct GuardTests {
    @Test("an address policy refusing loopback gives blockedAddress and no connection", arguments: ["127.0.0.1", "localhost"])
    func blockedAddress(host: String) throws {
        let server = try TestHTTPServer { _ in .text("secret internal data") }
        defer { server.stop() }
        let seen = Recorder<IPAddress>()
        var options = localOptions()
        options.addressPolicy = { address in
            seen.append(address)
            return !address.isPrivateOrReserved
        }

        let error = curlError { () throws(CurlError) in
            try CurlSession().perform(CurlRequest(url: "http://\(host):\(server.port)/"), options: options)
        }

        #expect(error?.code == .blockedAddress)
        #expect(seen.all.contains { $0.isPrivateOrReserved && $0.description.hasSuffix("1") })
        #expect(server.connectionCount == 0)
    }

    @Test("a guarded request does not reuse a connection an unguarded request opened")
    func guardedRequestSkipsUnvettedPool() throws {
        let server = try TestHTTPServer { _ in .text("ok") }
        defer { server.stop() }
        let session = CurlSession()
        #expect(try session.perform(CurlRequest(url: server.baseURL), options: localOptions()).status == 200)
        var guarded = localOptions()
        guarded.addressPolicy = { !$0.isPrivateOrReserved }
        let error = curlError { () throws(CurlError) in try session.perform(CurlRequest(url: server.baseURL), options: guarded) }
        #expect(error?.code == .blockedAddress)
        #expect(server.requests.count == 1)
    }

    @Test("an address policy that allows the address lets the request through")
    func allowedAddress() throws {
        let server = try TestHTTPServer { _ in .text("ok") }
        defer { server.stop() }
        var options = localOptions()
        options.addressPolicy = { $0 == IPAddress("127.0.0.1") }
        let response = try CurlSession().perform(CurlRequest(url: server.baseURL), options: options)
        #expect(response.status == 200)
        #expect(response.body == Array("ok".utf8))
    }

    @Test("a chain of redirects is followed within maxRedirects")
    func redirectsFollowed() throws {
        let server = try TestHTTPServer { request in
            guard request.target.hasPrefix("/hop/"), let n = Int(request.target.dropFirst(5)) else { return .text("?", status: 400) }
            return n == 0 ? .text("arrived") : .redirect(to: "/hop/\(n - 1)", status: n % 2 == 0 ? 301 : 307)
        }
        defer { server.stop() }
        var options = localOptions()
        options.maxRedirects = 3
        let targets = Recorder<String>()
        options.redirectPolicy = {
            targets.append($0)
            return true
        }

        let response = try CurlSession().perform(CurlRequest(url: server.baseURL + "/hop/3"), options: options)

        #expect(response.status == 200)
        #expect(response.body == Array("arrived".utf8))
        #expect(response.redirectCount == 3)
        #expect(response.effectiveURL == server.baseURL + "/hop/0")
        #expect(response.headers["content-type"] == "text/plain", "headers of the final response")
        #expect(targets.all == [2, 1, 0].map { server.baseURL + "/hop/\($0)" })
    }

    @Test("one redirect too many is tooManyRedirects, and its target is never requested")
    func tooManyRedirects() throws {
        let server = try TestHTTPServer { request in
            let n = Int(request.target.dropFirst(5)) ?? 0
            return n == 0 ? .text("arrived") : .redirect(to: "/hop/\(n - 1)")
        }
        defer { server.stop() }
        var options = localOptions()
        options.maxRedirects = 2

        let error = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL + "/hop/3"), options: options) }

        #expect(error?.code == .tooManyRedirects)
        #expect(server.requests.map(\.target) == ["/hop/3", "/hop/2", "/hop/1"])
    }

    @Test("with maxRedirects 0 a redirect is returned as the response")
    func redirectNotFollowed() throws {
        let server = try TestHTTPServer { _ in .redirect(to: "/elsewhere", status: 301) }
        defer { server.stop() }
        let response = try CurlSession().perform(CurlRequest(url: server.baseURL + "/x"), options: localOptions())
        #expect(response.status == 301)
        #expect(response.headers["Location"] == "/elsewhere")
        #expect(server.requests.count == 1)
    }

    @Test("a redirect the policy refuses is disallowedRedirect and its target gets no request")
    func disallowedRedirect() throws {
        let target = try TestHTTPServer { _ in .text("internal") }
        defer { target.stop() }
        let origin = try TestHTTPServer { _ in .redirect(to: target.baseURL + "/admin?token=abc") }
        defer { origin.stop() }
        var options = localOptions()
        options.maxRedirects = 5
        let asked = Recorder<String>()
        options.redirectPolicy = { url in
            asked.append(url)
            return !url.hasPrefix(target.baseURL)
        }

        let error = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: origin.baseURL), options: options) }

        #expect(error?.code == .disallowedRedirect)
        #expect(asked.all == [target.baseURL + "/admin?token=abc"])
        #expect(target.connectionCount == 0)
        #expect(error.map { !$0.description.contains("token=abc") } == true)
    }

    @Test("a redirect to another origin drops the Authorization header; 303 turns a POST into a GET")
    func crossOriginRedirect() throws {
        let target = try TestHTTPServer { _ in .text("landed") }
        defer { target.stop() }
        let origin = try TestHTTPServer { _ in .redirect(to: target.baseURL + "/landing", status: 303) }
        defer { origin.stop() }
        var options = localOptions()
        options.maxRedirects = 1
        let request = CurlRequest(
            method: "POST", url: origin.baseURL + "/submit",
            headers: [("Authorization", "Bearer r8_secret"), ("X-Trace", "1")],
            body: .bytes(Array("payload".utf8)))

        let response = try CurlSession().perform(request, options: options)

        #expect(response.status == 200)
        #expect(origin.requests.first?.header("Authorization") == "Bearer r8_secret")
        #expect(origin.requests.first?.body == Array("payload".utf8))
        let landed = try #require(target.requests.first)
        #expect(landed.method == "GET")
        #expect(landed.header("Authorization") == nil)
        #expect(landed.header("X-Trace") == "1")
        #expect(landed.body.isEmpty)
    }

    @Test("http is refused when only https is allowed, without connecting")
    func httpRefused() throws {
        let server = try TestHTTPServer { _ in .text("plain") }
        defer { server.stop() }
        var options = localOptions()
        options.allowedProtocols = ["https"]
        let error = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL), options: options) }
        #expect(error?.code == .protocolNotAllowed)
        #expect(server.connectionCount == 0)
    }

    @Test("file:// is refused, directly and as a redirect target")
    func fileRefused() throws {
        var options = localOptions()
        options.allowedProtocols = ["http", "https"]
        options.maxRedirects = 3
        let direct = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: "file:///etc/passwd"), options: options) }
        #expect(direct?.code == .protocolNotAllowed)

        let server = try TestHTTPServer { _ in .redirect(to: "file:///etc/passwd") }
        defer { server.stop() }
        let redirected = curlError { () throws(CurlError) in try CurlSession().perform(CurlRequest(url: server.baseURL), options: options) }
        #expect(redirected?.code == .protocolNotAllowed)
    }

    @Test("a refused connection is connectFailed, and the message leaks no query or header secret")
    func connectFailedWithoutSecrets() throws {
        let port = freePort()
        let request = CurlRequest(
            url: "http://user:hunter22@127.0.0.1:\(port)/object?X-Amz-Signature=deadbeefcafe",
            headers: [("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE")])
        let error = try #require(curlError { () throws(CurlError) in try CurlSession().perform(request, options: localOptions()) })
        #expect(error.code == .connectFailed)
        #expect(error.code.isTransient)
        for secret in ["deadbeefcafe", "AKIDEXAMPLE", "hunter22", "X-Amz-Signature"] {
            #expect(!error.description.contains(secret), "\(error)")
        }
        #expect(error.description.contains("127.0.0.1"))
    }

    @Test("header values with line breaks are refused before sending")
    func headerInjection() throws {
        let request = CurlRequest(url: "http://127.0.0.1:1/", headers: [("X-A", "1\r\nHost: evil")])
        let error = curlError { () throws(CurlError) in try CurlSession().perform(request, options: localOptions()) }
        #expect(error?.code == .invalidRequest)
    }
}
