import Foundation
import Glibc
import Logging
import Testing

@testable import Afterimage

@Suite("sd_notify, watchdog and socket-activation environment")
struct SystemdEnvironmentTests {
    @Test func notifySocketAddresses() {
        #expect(SystemdNotifier.socketAddress("/run/systemd/notify") == Array("/run/systemd/notify".utf8))
        #expect(SystemdNotifier.socketAddress("@abstract") == [0] + Array("abstract".utf8))
        #expect(SystemdNotifier.socketAddress("relative/path") == nil)
        #expect(SystemdNotifier.socketAddress("@") == nil)
        #expect(SystemdNotifier.socketAddress("/" + String(repeating: "x", count: 200)) == nil)
        #expect(!SystemdNotifier(environment: [:]).isEnabled)
        #expect(!SystemdNotifier(environment: [:]).notify("READY=1"))
    }

    @Test("a datagram reaches an abstract-namespace socket, lines joined by newlines")
    func notifyAbstract() throws {
        let name = "afterimage-test-\(UUID().uuidString.prefix(8))"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = [UInt8(0)] + Array(name.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { for (i, b) in bytes.enumerated() { $0[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        try #require(bound == 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name])
        #expect(notifier.isEnabled)
        #expect(notifier.notify(["READY=1", SystemdNotifier.status("line one\nline two")]))
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        try #require(count > 0)
        #expect(String(decoding: buffer[0..<count], as: UTF8.self) == "READY=1\nSTATUS=line one line two")
    }

    @Test func watchdogInterval() {
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "30000000"], pid: 42) == .seconds(15))
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"], pid: 42) == .seconds(15))
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"], pid: 42) == nil)
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "0"], pid: 42) == nil)
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "soon"], pid: 42) == nil)
        #expect(Watchdog.interval(environment: [:], pid: 42) == nil)
    }

    @Test func listenDescriptors() throws {
        #expect(SocketActivation.descriptorCount(environment: ["LISTEN_FDS": "1", "LISTEN_PID": "42"], pid: 42) == 1)
        #expect(SocketActivation.descriptorCount(environment: ["LISTEN_FDS": "1", "LISTEN_PID": "41"], pid: 42) == nil)
        #expect(SocketActivation.descriptorCount(environment: ["LISTEN_FDS": "1"], pid: 42) == nil)
        #expect(SocketActivation.descriptorCount(environment: ["LISTEN_FDS": "0", "LISTEN_PID": "42"], pid: 42) == nil)
        #expect(try SocketActivation.listeningSocket(environment: [:]) == nil)
        #expect(throws: SocketActivation.Failure.self) {
            try SocketActivation.listeningSocket(environment: ["LISTEN_FDS": "2", "LISTEN_PID": String(getpid())])
        }
    }
}

@Suite("journal-aware log lines")
struct LogFormatTests {
    let moment = Date(timeIntervalSince1970: 1_763_719_200.25)  // 2025-11-21T10:00:00.250Z

    @Test func journalLinesCarryTheSyslogPriority() {
        let line = StderrLogHandler.render(level: .warning, message: "lease lost", metadata: ["asset": "7"], format: .journal, now: moment)
        #expect(line == "<4>lease lost asset=7")
        #expect(StderrLogHandler.render(level: .error, message: "x", metadata: [:], format: .journal, now: moment) == "<3>x")
        #expect(StderrLogHandler.render(level: .debug, message: "x", metadata: [:], format: .journal, now: moment) == "<7>x")
        #expect(StderrLogHandler.render(level: .critical, message: "x", metadata: [:], format: .journal, now: moment) == "<2>x")
    }

    @Test func logfmtOtherwise() {
        let line = StderrLogHandler.render(
            level: .info, message: "listening now", metadata: ["port": "8080", "host": "127.0.0.1"],
            format: .logfmt, now: moment)
        #expect(line == #"ts=2025-11-21T10:00:00.250Z level=info msg="listening now" host=127.0.0.1 port=8080"#)
        #expect(StderrLogHandler.escape("a=b", quoteSpaces: true) == "\"a=b\"")
        #expect(StderrLogHandler.escape(#"C:\x"#, quoteSpaces: true) == #""C:\\x""#)
    }

    @Test("JOURNAL_STREAM counts only when it names what stderr really is")
    func journalDetection() throws {
        let path = NSTemporaryDirectory() + "afterimage-journal-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_WRONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        #expect(LogSetup.isJournal(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"], descriptor: fd))
        #expect(!LogSetup.isJournal(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"], descriptor: fd))
        #expect(!LogSetup.isJournal(environment: ["JOURNAL_STREAM": "garbage"], descriptor: fd))
        #expect(!LogSetup.isJournal(environment: [:], descriptor: fd))
    }

    @Test("loggers without a level of their own follow the process-wide one, which a reload changes")
    func levelFollowsReload() {
        let previous = LogSetup.currentLevel
        defer { LogSetup.setLevel(previous) }
        var handler = StderrLogHandler(label: "t", format: .logfmt)
        LogSetup.setLevel(.warning)
        #expect(handler.logLevel == .warning)
        LogSetup.setLevel(.debug)
        #expect(handler.logLevel == .debug)
        handler.logLevel = .error
        LogSetup.setLevel(.trace)
        #expect(handler.logLevel == .error)
    }
}

@Suite("reloadable settings")
struct ReloadableSettingsTests {
    @Test("reload swaps secrets, tokens, fetch limits and log level; reports fixed keys that changed")
    func applyTakesOnlyReloadableKeys() {
        var old = Settings()
        old.http.port = 8080
        old.replicate.webhookSecrets = ["whsec_" + Data("old-secret-bytes".utf8).base64EncodedString()]
        old.api.tokens = ["first"]
        let holder = ReloadableSettings(old)

        var new = old
        new.http.port = 9090
        new.workers.count = 2
        new.replicate.webhookSecrets = ["whsec_" + Data("new-secret-bytes".utf8).base64EncodedString()]
        new.api.tokens = ["second", "third"]
        new.fetch.maxBytes = 1234
        new.logLevel = "debug"
        let ignored = holder.apply(new)

        #expect(Set(ignored) == ["http.port", "workers.count"])
        #expect(holder.current.http.port == 8080, "a fixed key changed without a restart")
        #expect(holder.current.workers.count == old.workers.count)
        #expect(holder.apiTokens == ["second", "third"])
        #expect(holder.fetchPolicy.maxBytes == 1234)
        #expect(holder.current.logLevel == "debug")
        let body = Array("{}".utf8)
        let signature = StandardWebhooksVerifier.sign(secret: new.replicate.webhookSecrets[0], id: "m", timestamp: 1_000, body: body)
        #expect(throws: Never.self) {
            try holder.replicateVerifier.verify(id: "m", timestamp: "1000", signature: signature, body: body, now: Date(timeIntervalSince1970: 1_000))
        }
        let oldSignature = StandardWebhooksVerifier.sign(secret: old.replicate.webhookSecrets[0], id: "m", timestamp: 1_000, body: body)
        #expect(throws: StandardWebhooksVerifier.Failure.self) {
            try holder.replicateVerifier.verify(
                id: "m", timestamp: "1000", signature: oldSignature, body: body, now: Date(timeIntervalSince1970: 1_000))
        }
    }
}
