import Afterimage
import Foundation
import TestSupport
import Testing

/// The shipped units pass systemd's own checks, and `make install` puts every file where the units
/// and the README say it is.
@Suite("systemd units and make install")
struct SystemdUnitTests {
    static let analyze = "/usr/bin/systemd-analyze"
    static var unitDirectory: URL { TestEnvironment.repositoryRoot.appendingPathComponent("systemd") }

    static func requireAnalyze() throws {
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            throw TestSupportError("\(analyze) is missing: apt-get install systemd (the unit checks must not be skipped)")
        }
    }

    /// A copy of the units whose ExecStart= names the binary we built (verify checks that it exists).
    static func stagedUnits() throws -> URL {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("afterimage-units-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let binary = try TestEnvironment.afterimageBinary()
        for name in ["afterimage.service", "afterimage.socket"] {
            let text = try String(contentsOf: unitDirectory.appendingPathComponent(name), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/afterimage", with: binary)
            try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test("systemd-analyze verify is clean")
    func verify() throws {
        try Self.requireAnalyze()
        let directory = try Self.stagedUnits()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = try runCommand(
            Self.analyze,
            [
                "verify",
                directory.appendingPathComponent("afterimage.service").path,
                directory.appendingPathComponent("afterimage.socket").path,
            ])
        // Exit 0 is not enough: verify also prints warnings (unknown keys, bad values) and still succeeds.
        let lines = output.split(separator: "\n").filter { $0.contains("afterimage") }
        #expect(lines.isEmpty, "systemd-analyze verify: \(output)")
    }

    @Test("systemd-analyze security --offline=true scores at most 1.5")
    func securityScore() throws {
        try Self.requireAnalyze()
        let output = try runCommand(
            Self.analyze,
            [
                "security", "--offline=true", "--no-pager",
                Self.unitDirectory.appendingPathComponent("afterimage.service").path,
            ])
        let line = try #require(
            output.split(separator: "\n").first { $0.contains("Overall exposure level") },
            "no score in: \(output)")
        let score = try #require(
            line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) },
            "unreadable score line: \(line)")
        #expect(score <= 1.5, "exposure \(score) > 1.5:\n\(output)")
    }

    @Test("the service is what the issue asks for: notify, watchdog, reload, dynamic user, state directory, credentials")
    func serviceEssentials() throws {
        let text = try String(contentsOf: Self.unitDirectory.appendingPathComponent("afterimage.service"), encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        // Reload through the daemon's own binary (a minimal Debian has no /bin/kill), confirmed in
        // RuntimeDirectory=; NspawnServiceTests runs it under systemd.
        for expected in [
            "Type=notify", "ExecReload=/usr/local/bin/afterimage reload --pid $MAINPID", "DynamicUser=yes",
            "StateDirectory=afterimage", "RuntimeDirectory=afterimage", "NotifyAccess=main",
            "SocketBindDeny=any", "SocketBindAllow=tcp:8080",
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        #expect(lines.contains { $0.hasPrefix("WatchdogSec=") })
        #expect(lines.contains { $0.hasPrefix("LoadCredential=storage-secret_access_key:") })
        // Resource limits, sized for http.connection_limit's default (256) as the comments explain.
        for key in ["LimitNOFILE=", "TasksMax=", "MemoryHigh=", "MemoryMax="] {
            #expect(lines.contains { $0.hasPrefix(key) }, "missing \(key)")
        }
        // The sums the unit's comments give, for the default http.connection_limit: a default that
        // grows past them must grow the unit too.
        let connections = Settings().http.connectionLimit
        let value = { (key: String) in lines.first { $0.hasPrefix(key + "=") }.flatMap { Int($0.dropFirst(key.count + 1)) } ?? 0 }
        #expect(value("LimitNOFILE") >= 2 * connections + 512)
        #expect(value("TasksMax") >= connections + 768)
        let socket = try String(contentsOf: Self.unitDirectory.appendingPathComponent("afterimage.socket"), encoding: .utf8)
        #expect(socket.contains("ListenStream="))
        #expect(socket.contains("#IPAddressDeny=any") && socket.contains("#IPAddressAllow="))
    }

    @Test("make install DESTDIR= PREFIX= puts every file in place; make uninstall removes them")
    func makeInstall() throws {
        let root = NSTemporaryDirectory() + "afterimage-install-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let repository = TestEnvironment.repositoryRoot.path
        let binary = try TestEnvironment.afterimageBinary()
        try runCommand("/usr/bin/make", ["-C", repository, "install", "DESTDIR=\(root)", "PREFIX=/opt/ai", "BINARY=\(binary)"])
        let fm = FileManager.default
        #expect(fm.isExecutableFile(atPath: root + "/opt/ai/bin/afterimage"))
        #expect(fm.fileExists(atPath: root + "/etc/afterimage/afterimage.example.json"))
        #expect(fm.fileExists(atPath: root + "/opt/ai/share/afterimage/migrations/0001_initial.sql"))
        let service = try String(contentsOfFile: root + "/opt/ai/lib/systemd/system/afterimage.service", encoding: .utf8)
        #expect(service.contains("ExecStart=/opt/ai/bin/afterimage serve --config /etc/afterimage/afterimage.json"))
        #expect(service.contains("ExecReload=/opt/ai/bin/afterimage reload --pid $MAINPID"))
        #expect(!service.contains("/usr/local/"))
        #expect(fm.fileExists(atPath: root + "/opt/ai/lib/systemd/system/afterimage.socket"))
        let credentials = try fm.attributesOfItem(atPath: root + "/etc/afterimage/credentials")
        #expect((credentials[.posixPermissions] as? Int) == 0o700)
        // The installed example is the repository's own.
        let example = try Data(contentsOf: URL(fileURLWithPath: root + "/etc/afterimage/afterimage.example.json"))
        #expect(example == (try Data(contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("config/afterimage.example.json"))))

        try runCommand("/usr/bin/make", ["-C", repository, "uninstall", "DESTDIR=\(root)", "PREFIX=/opt/ai"])
        for path in [
            "/opt/ai/bin/afterimage", "/opt/ai/lib/systemd/system/afterimage.service",
            "/opt/ai/lib/systemd/system/afterimage.socket", "/etc/afterimage/afterimage.example.json",
            "/opt/ai/share/afterimage",
        ] {
            #expect(!fm.fileExists(atPath: root + path), "\(path) left behind")
        }
    }
}
