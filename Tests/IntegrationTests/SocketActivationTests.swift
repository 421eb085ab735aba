import Curl
import Foundation
import Glibc
import TestSupport
import Testing

@Suite("systemd socket activation", .serialized)
struct SocketActivationTests {
    static func get(_ port: Int, _ path: String) -> Int? {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.connectTimeout = .seconds(2)
        options.totalTimeout = .seconds(5)
        return (try? CurlSession().perform(CurlRequest(url: "http://127.0.0.1:\(port)\(path)"), options: options))?.status
    }

    @Test("a listening socket passed as fd 3 with LISTEN_FDS=1 is served; http.port is not bound")
    func servesInheritedSocket() throws {
        let harness = try ArchiveHarness()
        let (fd, port) = try LoopbackSocket.listening()
        defer { close(fd) }
        let fallbackPort = freePort()
        var environment = harness.environment(port: fallbackPort)
        environment["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        // LISTEN_PID must be the daemon's own pid: bash sets it to $$ and then execs the daemon.
        environment["LISTEN_FDS"] = "1"
        let daemon = try SpawnedProcess(
            executable: "/bin/bash", arguments: daemonCommand([try TestEnvironment.afterimageBinary(), "serve"], setListenPID: true),
            environment: environment, descriptor3: fd)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the daemon to answer on the passed socket") {
            guard daemon.exitStatus() == nil else { throw TestSupportError("daemon exited: \(daemon.log)") }
            return Self.get(port, "/readyz") == 200
        }
        #expect(Self.get(fallbackPort, "/healthz") == nil, "the daemon bound http.port as well")
        #expect(daemon.log.contains("serving the socket passed by systemd"))
        #expect(try daemon.terminate() == 0)
    }

    @Test("LISTEN_PID naming another process: the descriptor is not ours, http.port is bound instead")
    func ignoresForeignListenPID() throws {
        let harness = try ArchiveHarness()
        let (fd, port) = try LoopbackSocket.listening()
        defer { close(fd) }
        let ownPort = freePort()
        var environment = harness.environment(port: ownPort)
        environment["LISTEN_FDS"] = "1"
        environment["LISTEN_PID"] = "1"
        let daemon = try SpawnedProcess(
            executable: "/bin/bash", arguments: daemonCommand([try TestEnvironment.afterimageBinary(), "serve"], setListenPID: false),
            environment: environment, descriptor3: fd)
        try waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(100), "the daemon to answer on http.port") {
            guard daemon.exitStatus() == nil else { throw TestSupportError("daemon exited: \(daemon.log)") }
            return Self.get(ownPort, "/healthz") == 200
        }
        // Nobody accepts on the passed socket: a request there gets no answer.
        #expect(Self.get(port, "/healthz") == nil)
        #expect(try daemon.terminate() == 0)
    }
}
