import Curl
import Foundation
import Testing

@Suite("Curl per-destination headers and literal paths")
struct DestinationTests {
    /// 127.0.0.1 and localhost reach the same test server under two host names: the credential must reach
    /// only the name it is given for, on the first hop and after every redirect, and never twice.
    @Test("destination headers go only to the hosts that get them, across redirects")
    func destinationHeadersFollowTheHost() throws {
        let server = try TestHTTPServer { request in
            let port = request.header("Host")?.split(separator: ":").last.map(String.init) ?? ""
            switch request.target {
            case "/start": return .redirect(to: "http://localhost:\(port)/second")
            case "/second": return .redirect(to: "/third", status: 307)  // same origin
            case "/third": return .redirect(to: "http://127.0.0.1:\(port)/last", status: 301)
            default: return .text("arrived")
            }
        }
        defer { server.stop() }
        var options = localOptions()
        options.maxRedirects = 5
        let hosts = Recorder<String>()
        options.destinationHeaders = { host in
            hosts.append(host)
            return host == "localhost" ? [("Authorization", "Bearer only-for-localhost")] : []
        }
        let response = try CurlSession().perform(
            CurlRequest(url: server.baseURL + "/start", headers: [("Accept", "*/*")]), options: options)
        #expect(response.status == 200)
        #expect(hosts.all == ["127.0.0.1", "localhost", "localhost", "127.0.0.1"])
        let seen = server.requests.map { ($0.target, $0.headers.filter { $0.0.lowercased() == "authorization" }.map(\.1)) }
        #expect(seen.map(\.0) == ["/start", "/second", "/third", "/last"])
        #expect(seen.map(\.1) == [[], ["Bearer only-for-localhost"], ["Bearer only-for-localhost"], []])
        #expect(server.requests.allSatisfy { $0.header("Accept") == "*/*" })
    }

    /// libcurl squashes dot segments unless told not to; a signed S3 key must arrive as it was signed.
    @Test("pathAsIs sends /../ and /./ segments unchanged")
    func pathAsIs() throws {
        let server = try TestHTTPServer { _ in .text("ok") }
        defer { server.stop() }
        let session = CurlSession()
        var options = localOptions()
        _ = try session.perform(CurlRequest(url: server.baseURL + "/bucket/a/../b/./c"), options: options)
        options.pathAsIs = true
        _ = try session.perform(CurlRequest(url: server.baseURL + "/bucket/a/../b/./c"), options: options)
        #expect(server.requests.map(\.target) == ["/bucket/b/c", "/bucket/a/../b/./c"])
    }
}
