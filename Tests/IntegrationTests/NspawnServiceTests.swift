import Afterimage
import AfterimageTestSupport
import Crypto
import Curl
import Foundation
import Primitives
import Synchronization
import TestSupport
import Testing

/// The shipped units under a real systemd 252 as PID 1 (Debian 12 booted by systemd-nspawn), installed
/// with `make install DESTDIR=`, the binary built as an operator builds it (Swift runtime linked in)
/// into a root that has no Swift. The daemon uses the test run's PostgreSQL and SeaweedFS through the
/// host network; every secret reaches it only through `LoadCredential=`.
@Suite("the unit under systemd in a container", .serialized)
struct NspawnServiceTests {
    @Test("the installable binary needs only Debian's libraries, all from the packages the README lists")
    func binaryDependencies() throws {
        let binary = try NspawnContainer.installableBinary()
        let ldd = try runCommand("/usr/bin/ldd", [binary])
        #expect(!ldd.contains("not found"), "\(ldd)")
        #expect(!ldd.lowercased().contains("swift"), "the Swift runtime must be linked in, not loaded:\n\(ldd)")
        #expect(!ldd.contains("libFoundation") && !ldd.contains("libdispatch"), "\(ldd)")
        // Every library comes from a package that every Debian has (minbase: Priority required, and
        // apt with what it needs) or from the README's runtime packages and what they depend on.
        let listed = try Self.readmeRuntimePackages()
        #expect(listed == (try Self.containerRuntimePackages()), "README and scripts/nspawn.sh disagree on the runtime packages")
        let closure = try Self.dependencyClosure(of: listed + ["apt"])
        let libraries = ldd.split(separator: "\n").compactMap { $0.split(whereSeparator: \.isWhitespace).first { $0.hasPrefix("/") } }.map(
            String.init)
        let owners = try Self.owningPackages(of: libraries)
        let priorities = try Self.priorities(of: Array(Set(owners.values)))
        for library in libraries {
            let owner = try #require(owners[library], "no package owns \(library)")
            #expect(
                priorities[owner] == "required" || closure.contains(owner),
                "\(library) is from \(owner) (\(priorities[owner] ?? "?")), which the README's runtime packages do not bring")
        }
    }

    /// The package that installed each library, in one dpkg call (dpkg records some files under /lib,
    /// some under /usr/lib: every spelling is asked for).
    static func owningPackages(of paths: [String]) throws -> [String: String] {
        let spellings = { (path: String) -> [String] in
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            return Array(Set([path, real].flatMap { [$0, $0.hasPrefix("/usr/") ? String($0.dropFirst(4)) : "/usr" + $0] }))
        }
        // dpkg -S exits 1 when any spelling is unknown; the known ones are still printed.
        let output = try runCommand("/bin/sh", ["-c", "dpkg -S \"$@\" 2>/dev/null; true", "sh"] + paths.flatMap(spellings))
        var byFile: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let separator = line.range(of: ": ") else { continue }
            let package = line[..<separator.lowerBound].split(separator: ":").first.map(String.init) ?? ""
            for file in line[separator.upperBound...].split(separator: ",") {
                byFile[file.trimmingCharacters(in: .whitespaces)] = package
            }
        }
        var owners: [String: String] = [:]
        for path in paths {
            owners[path] = spellings(path).lazy.compactMap { byFile[$0] }.first
        }
        return owners
    }

    static func priorities(of packages: [String]) throws -> [String: String] {
        let output = try runCommand("/usr/bin/dpkg-query", ["-W", "-f=${Package} ${Priority}\n"] + packages)
        return Dictionary(
            output.split(separator: "\n").compactMap { line -> (String, String)? in
                let fields = line.split(separator: " ")
                return fields.count == 2 ? (String(fields[0]), String(fields[1])) : nil
            }, uniquingKeysWith: { first, _ in first })
    }

    /// Packages and everything they depend on, recursively (as installed here).
    static func dependencyClosure(of packages: [String]) throws -> Set<String> {
        let output = try runCommand(
            "/usr/bin/apt-cache",
            [
                "depends", "--recurse", "--installed", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
            ] + packages)
        return Set(
            output.split(separator: "\n").compactMap { line -> String? in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                let name =
                    trimmed.hasPrefix("Depends:") || trimmed.hasPrefix("PreDepends:")
                    ? String(trimmed.drop { $0 != ":" }.dropFirst()).trimmingCharacters(in: .whitespaces) : trimmed
                guard !name.isEmpty, !name.hasPrefix("<") else { return nil }
                return name.split(separator: ":").first.map(String.init)
            })
    }

    @Test(
        "start waits for READY=1 and shows STATUS; DynamicUser writes the spool; credentials are read; reload keeps the pid and applies a rotated token at once; the journal filters by priority"
    )
    func startReloadJournal() throws {
        let service = try NspawnService()
        defer { service.container.shutdown() }
        let container = service.container

        // The installed binary runs in a root without Swift.
        let ldd = try container.run(["ldd", "/usr/local/bin/afterimage"])
        #expect(!ldd.contains("not found") && !ldd.contains("swift"), "\(ldd)")

        // Type=notify: `systemctl start` returns once READY=1 arrived (it would hang until
        // TimeoutStartSec= otherwise), with STATUS= shown. systemd's debug log proves the order: it
        // got READY=1 from the main process before it logged the unit as started.
        try container.run(["systemd-analyze", "log-level", "debug"])
        try service.start()
        try container.run(["systemd-analyze", "log-level", "info"])
        #expect(try container.property("afterimage.service", "SubState") == "running")
        let pid = try service.mainPID()
        let manager = try container.run(["journalctl", "--no-pager", "-o", "cat", "_PID=1"]).split(separator: "\n")
        let ready = manager.firstIndex { $0.contains("afterimage.service: Got notification message from PID \(pid)") && $0.contains("READY=1") }
        let active = manager.firstIndex { $0.hasPrefix("Started afterimage.service") }
        #expect(
            ready != nil && active != nil && ready! < active!,
            "READY=1 at line \(ready.map(String.init) ?? "none"), started at \(active.map(String.init) ?? "none") of systemd's log")
        #expect(!(try container.property("afterimage.service", "StatusText")).isEmpty)
        let status = container.execute(["systemctl", "status", "--no-pager", "afterimage.service"]).output
        #expect(status.contains("Active: active (running)"), "\(status)")
        #expect(status.contains("Status: \""), "no STATUS line in:\n\(status)")

        // DynamicUser=: a uid from systemd's dynamic range, owning the state directory (0700).
        let uid = try #require(
            try container.run(["cat", "/proc/\(pid)/status"]).split(separator: "\n")
                .first { $0.hasPrefix("Uid:") }?.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) })
        #expect((61184...65519).contains(uid), "uid \(uid) is not a dynamic user")
        #expect(
            try container.run(["stat", "-c", "%u %a", "/var/lib/private/afterimage"]).trimmingCharacters(in: .whitespacesAndNewlines) == "\(uid) 700")

        // Credentials: the webhook secret, database URL and S3 keys exist only as LoadCredential= files.
        let harness = service.harness
        let name = "nspawn-\(UUID().uuidString.prefix(8)).png"
        let url = harness.fake.url(name, "size=200000&type=image/png")
        let predictionID = "nspawn\(UUID().uuidString.prefix(8).lowercased())"
        #expect(
            try service.post(
                harness.prediction(id: predictionID, output: [url]), secret: "whsec_" + Data(repeating: 7, count: 24).base64EncodedString()
            ).status == 401)
        let accepted = try service.post(harness.prediction(id: predictionID, output: [url]))
        #expect(accepted.status == 200, "\(String(decoding: accepted.body, as: UTF8.self))")
        // The spool: the output is downloaded into /var/lib/afterimage, then stored.
        try harness.waitForAssets("stored", count: 1, timeout: .seconds(60))
        let stored = try #require(try harness.storedAssets(predictionID: predictionID).first)
        #expect(stored.sha256 == FakeProvider.sha256Hex(FakeProvider.bytes(name, size: 200000)))
        #expect(
            try container.run(["stat", "-c", "%u", "/var/lib/private/afterimage/spool"]).trimmingCharacters(in: .whitespacesAndNewlines) == "\(uid)")

        // Reload: the new token works on the very next request, the old one no longer; same process.
        #expect(try service.lookupStatus(token: NspawnService.firstToken) == 200)
        #expect(try service.lookupStatus(token: NspawnService.secondToken) == 401)
        try service.writeConfiguration(token: NspawnService.secondToken, workers: 3)
        try container.run(["systemctl", "reload", "afterimage"], timeout: 60)
        #expect(try service.mainPID() == pid)
        #expect(try service.lookupStatus(token: NspawnService.secondToken) == 200)
        #expect(try service.lookupStatus(token: NspawnService.firstToken) == 401)

        // A configuration that does not load: reload fails, the daemon keeps the running one.
        try container.write("/etc/afterimage/afterimage.json", #"{"http": {"connection_limit": 0}}"#)
        let refused = container.execute(["systemctl", "reload", "afterimage"], timeout: 60)
        #expect(refused.status != 0, "a refused reload must make `systemctl reload` fail")
        #expect(try container.property("afterimage.service", "ActiveState") == "active")
        #expect(try service.mainPID() == pid)
        #expect(try service.lookupStatus(token: NspawnService.secondToken) == 200)
        try service.writeConfiguration(token: NspawnService.secondToken, workers: 3)

        // The journal knows each line's priority: -p warning shows the reload's warning (workers.count
        // takes a restart) and its refusal, and none of the info lines the daemon wrote.
        let warnings = try container.run(["journalctl", "--no-pager", "-o", "cat", "-u", "afterimage", "-p", "warning"])
        let everything = try container.run(["journalctl", "--no-pager", "-o", "cat", "-u", "afterimage"])
        #expect(warnings.contains("workers.count"), "no restart warning in:\n\(warnings)")
        #expect(warnings.contains("reload refused"), "no refusal in:\n\(warnings)")
        #expect(everything.contains("signal received"), "the info line to filter out is missing:\n\(everything)")
        #expect(!warnings.contains("signal received"), "info lines under -p warning:\n\(warnings)")
        for line in warnings.split(separator: "\n") {
            #expect(!line.hasPrefix("<") && !line.hasPrefix("ts="), "priority prefix or logfmt reached the journal: \(line)")
        }
    }

    @Test("restart through the socket refuses and loses nothing; the watchdog restarts a stopped daemon; stop exits 0 and releases leases")
    func restartWatchdogStop() throws {
        let service = try NspawnService()
        defer { service.container.shutdown() }
        let container = service.container
        let harness = service.harness
        try service.start()

        // Socket activation: signed webhooks keep coming, one every 20 ms whether or not earlier ones
        // were answered, while the service restarts. Those that arrive between the old process's end
        // and the new one's READY=1 wait in the socket's backlog; every one must be answered 2xx.
        let load = WebhookLoad(service: service)
        load.start()
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(50), "the first webhooks answered") { load.answered >= 10 }
        let oldPID = try service.mainPID()
        try container.run(["systemctl", "restart", "afterimage"], timeout: 180)
        let restartedAt = ContinuousClock.now
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(50), "webhooks after the restart") {
            load.startedAfter(restartedAt) >= 10
        }
        let results = try load.finish()
        #expect(try service.mainPID() != oldPID)
        #expect(try container.property("afterimage.socket", "ActiveState") == "active")
        let stoppedAt = try #require(UInt64(try container.property("afterimage.service", "InactiveEnterTimestampMonotonic")))
        let readyAt = try #require(UInt64(try container.property("afterimage.service", "ActiveEnterTimestampMonotonic")))
        let inGap = results.filter { $0.startedAt >= stoppedAt && $0.startedAt < readyAt }
        FileHandle.standardError.write(
            Data(
                "nspawn restart: \(results.count) webhooks, \(inGap.count) sent while no daemon ran (\(Double(readyAt - stoppedAt) / 1000) ms)\n".utf8
            ))
        #expect(!inGap.isEmpty, "no webhook was sent while no daemon ran (\(stoppedAt)..\(readyAt)); \(results.count) sent")
        let failed = results.filter { $0.status.map { !(200..<300).contains($0) } ?? true }
        #expect(failed.isEmpty, "\(failed.count) of \(results.count) webhooks failed: \(failed.prefix(5).map(\.description))")
        #expect(try harness.scalar("SELECT count(*) FROM deliveries", as: Int.self) == results.count)

        // Watchdog: a stopped daemon stops pinging and systemd restarts it within twice WatchdogSec=.
        let watchdogSeconds = 8
        try container.write("/etc/systemd/system/afterimage.service.d/watchdog.conf", "[Service]\nWatchdogSec=\(watchdogSeconds)\n")
        try container.run(["systemctl", "daemon-reload"])
        try container.run(["systemctl", "restart", "afterimage"], timeout: 180)
        let stopped = try service.mainPID()
        try container.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "afterimage"])
        let frozeAt = ContinuousClock.now
        let state = try container.run(["cat", "/proc/\(stopped)/stat"]).split(separator: " ").dropFirst(2).first
        #expect(state == "T", "SIGSTOP did not stop the daemon (state \(state ?? "?"))")
        try waitUntil(timeout: .seconds(watchdogSeconds * 2 + 30), pollEvery: .milliseconds(100), "a new daemon after the watchdog fired") {
            let pid = try service.mainPID()
            guard pid != 0, pid != stopped else { return false }
            return try container.property("afterimage.service", "SubState") == "running"
        }
        let took = ContinuousClock.now - frozeAt
        FileHandle.standardError.write(Data("nspawn watchdog: restarted \(took) after SIGSTOP\n".utf8))
        #expect(took <= .seconds(watchdogSeconds * 2), "restarted \(took) after SIGSTOP, WatchdogSec=\(watchdogSeconds)")
        let journal = try container.run(["journalctl", "--no-pager", "-o", "cat", "-u", "afterimage"])
        #expect(journal.contains("Watchdog timeout"), "no watchdog timeout in the journal:\n\(journal.suffix(2000))")
        try container.remove("/etc/systemd/system/afterimage.service.d/watchdog.conf")
        try container.run(["systemctl", "daemon-reload"])

        // Stop while transfers run: exit 0 within the drain, and the leases are released at once.
        let names = (0..<3).map { "nspawn-drain-\($0)-\(UUID().uuidString.prefix(6)).bin" }
        let predictionID = "drain\(UUID().uuidString.prefix(8).lowercased())"
        let slow = names.map { harness.fake.url($0, "size=393216&rate=32768") }
        #expect(try service.post(harness.prediction(id: predictionID, output: slow)).status == 200)
        try waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(50), "transfers running") {
            try harness.fake.stats().active.values.reduce(0, +) >= 2
        }
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE lease_expires_at IS NOT NULL", as: Int.self) >= 2)
        try container.run(["systemctl", "stop", "afterimage"], timeout: 120)
        #expect(try container.property("afterimage.service", "ActiveState") == "inactive")
        #expect(try container.property("afterimage.service", "Result") == "success")
        #expect(try container.property("afterimage.service", "ExecMainStatus") == "0")
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE lease_expires_at IS NOT NULL", as: Int.self) == 0)
        #expect(try harness.scalar("SELECT count(*) FROM assets WHERE state = 'in_flight'", as: Int.self) == 0)
    }

    @Test("without afterimage.socket the daemon binds http.port itself under the unit's SocketBindDeny=any")
    func withoutSocketUnit() throws {
        let service = try NspawnService()
        defer { service.container.shutdown() }
        let container = service.container
        // What the unit's comment tells an operator to do: no socket unit, and the port allowed.
        // (Debian 12's systemd is built without BPF_FRAMEWORK and does not enforce SocketBind*=; this
        // proves the unit as shipped plus that drop-in starts and serves, bound by the daemon itself.)
        try container.run(["systemctl", "mask", "afterimage.socket"])
        try container.write("/etc/systemd/system/afterimage.service.d/port.conf", "[Service]\nSocketBindAllow=tcp:\(service.port)\n")
        try container.run(["systemctl", "daemon-reload"])
        try service.start()
        #expect(try container.property("afterimage.socket", "LoadState") == "masked")
        #expect(try container.property("afterimage.socket", "ActiveState") == "inactive", "systemd holds the port after all")
        #expect(try container.property("afterimage.service", "SocketBindDeny") != "")
        let predictionID = "bind\(UUID().uuidString.prefix(8).lowercased())"
        #expect(try service.post(service.harness.prediction(id: predictionID, status: "processing", output: nil)).status == 200)
        #expect(try service.lookupStatus(token: NspawnService.firstToken) == 200)
        try container.run(["systemctl", "stop", "afterimage"], timeout: 120)
        #expect(try container.property("afterimage.service", "Result") == "success")
    }

    /// The packages the README's install section lists as the service's runtime dependencies.
    static func readmeRuntimePackages() throws -> [String] {
        let readme = try String(contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let line = try #require(
            readme.split(separator: "\n").first { $0.hasPrefix("Runtime packages (Debian 12):") },
            "README has no \"Runtime packages (Debian 12):\" line")
        return line.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.flatMap { $0.element.split(separator: " ").map(String.init) }
    }

    /// scripts/nspawn.sh's runtime_packages: what the container root has besides systemd and D-Bus.
    static func containerRuntimePackages() throws -> [String] {
        let script = try String(contentsOf: TestEnvironment.scriptsDirectory.appendingPathComponent("nspawn.sh"), encoding: .utf8)
        let line = try #require(script.split(separator: "\n").first { $0.hasPrefix("runtime_packages=(") })
        return line.dropFirst("runtime_packages=(".count).prefix { $0 != ")" }.split(separator: " ").map(String.init)
    }
}

/// The daemon installed in a fresh container: `make install DESTDIR=` into the container's root,
/// a configuration without secrets, one credential file per secret, and the socket on a free port.
final class NspawnService: @unchecked Sendable {
    // Owned by one test.
    let container: NspawnContainer
    let harness: ArchiveHarness
    let port: Int

    static let firstToken = "token-one-\(UUID().uuidString)"
    static let secondToken = "token-two-\(UUID().uuidString)"

    init() throws {
        harness = try ArchiveHarness()
        port = freePort()
        container = try NspawnContainer(image: try NspawnContainer.image())
        do {
            try install()
        } catch {
            container.shutdown()
            throw error
        }
    }

    private func install() throws {
        _ = try NspawnContainer.installableBinary()
        try runCommand(
            "/usr/bin/make",
            [
                "-C", TestEnvironment.repositoryRoot.path, "install",
                "DESTDIR=\(container.rootPath)", "CONFIGURATION=debug",
            ])
        try writeConfiguration(token: Self.firstToken, workers: 2)
        let s3 = harness.s3
        let credentials = [
            "database-url": harness.databaseURL, "storage-access_key_id": s3.accessKeyID,
            "storage-secret_access_key": s3.secretAccessKey, "replicate-webhook_secret": harness.secret,
        ]
        for (name, value) in credentials {
            try container.write("/etc/afterimage/credentials/\(name)", value, mode: 0o600)
        }
        // `systemctl edit afterimage.socket`: the test's port instead of 8080.
        try container.write(
            "/etc/systemd/system/afterimage.socket.d/port.conf",
            "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(port)\n")
        try container.run(["systemctl", "daemon-reload"])
        try container.run(["systemctl", "enable", "afterimage"])
    }

    /// /etc/afterimage/afterimage.json: no secret in it (the API token as its SHA-256).
    func writeConfiguration(token: String, workers: Int) throws {
        let s3 = harness.s3
        let tokenHash = Hex.encode(SHA256.hash(data: Data(token.utf8)))
        let configuration: [String: Any] = [
            "http": ["host": "127.0.0.1", "port": port],
            "storage": ["endpoint": s3.endpoint, "region": s3.region, "bucket": s3.bucket, "prefix": harness.prefix],
            "fetch": ["allowed_hosts": ["127.0.0.1"], "allowed_schemes": ["http"], "allow_private_networks": true],
            "workers": ["count": workers, "lease_seconds": 60, "drain_timeout": 1],
            "api": ["tokens": ["sha256:\(tokenHash)"]],
            "log": ["level": "info"],
        ]
        let data = try JSONSerialization.data(withJSONObject: configuration, options: [.sortedKeys, .prettyPrinted])
        try container.write("/etc/afterimage/afterimage.json", String(decoding: data, as: UTF8.self))
    }

    /// `systemctl start afterimage`, bounded: without READY=1 it would wait for TimeoutStartSec=.
    func start() throws {
        let result = container.execute(["systemctl", "start", "afterimage"], timeout: 120)
        guard result.status == 0 else {
            let journal = container.execute(["journalctl", "--no-pager", "-u", "afterimage", "-n", "60"]).output
            throw TestSupportError(
                """
                systemctl start afterimage \(result.status == 124 ? "did not return within 120 s (no READY=1)" : "exited \(result.status)"): \
                \(result.output)\njournal:\n\(journal)
                """)
        }
        #expect(try container.property("afterimage.service", "ActiveState") == "active")
    }

    func mainPID() throws -> Int { Int(try container.property("afterimage.service", "MainPID")) ?? 0 }

    func post(_ body: [UInt8], secret: String? = nil, timeout: Duration = .seconds(90)) throws -> CurlResponse {
        try SignedWebhook(body, secret: secret ?? harness.secret).post(port: port, timeout: timeout)
    }

    func lookupStatus(token: String) throws -> Int {
        var options = CurlOptions()
        options.allowedProtocols = ["http"]
        options.totalTimeout = .seconds(30)
        return try CurlSession().perform(
            CurlRequest(
                url: "http://127.0.0.1:\(port)/v1/assets?limit=1",
                headers: [("Authorization", "Bearer \(token)")]), options: options
        ).status
    }
}

/// Signed webhooks sent at a steady pace, each on its own thread, whether or not earlier ones have
/// been answered, so that some are sent while no daemon runs. Bounded: at most 1000, and `finish`
/// waits at most 120 s for the answers.
final class WebhookLoad: Sendable {
    struct Outcome: Sendable, CustomStringConvertible {
        /// CLOCK_MONOTONIC in microseconds, comparable with systemd's `…TimestampMonotonic`.
        let startedAt: UInt64
        let started: ContinuousClock.Instant
        let status: Int?
        let error: String?
        var description: String { status.map { "HTTP \($0)" } ?? "error \(error ?? "?")" }
    }

    private let service: NspawnService
    private let outcomes = Mutex<[Outcome]>([])
    private let starts = Mutex<[ContinuousClock.Instant]>([])
    private let running = Atomic<Bool>(false)
    private let group = DispatchGroup()

    init(service: NspawnService) { self.service = service }

    var answered: Int { outcomes.withLock { $0.filter { $0.status == 200 }.count } }
    func startedAfter(_ instant: ContinuousClock.Instant) -> Int { starts.withLock { $0.filter { $0 > instant }.count } }

    func start() {
        running.store(true, ordering: .releasing)
        group.enter()
        Thread { [self] in
            defer { group.leave() }
            var sent = 0
            while running.load(ordering: .acquiring), sent < 1000 {
                sent += 1
                group.enter()
                Thread { [self] in
                    defer { group.leave() }
                    send()
                }.start()
                Thread.sleep(forTimeInterval: 0.02)
            }
        }.start()
    }

    private func send() {
        let startedAt = SystemdNotifier.monotonicMicroseconds()
        let started = ContinuousClock.now
        starts.withLock { $0.append(started) }
        let id = "load\(UUID().uuidString.prefix(12).lowercased())"
        let body = service.harness.prediction(id: id, status: "processing", output: nil)
        let outcome: Outcome
        do {
            let response = try service.post(body, timeout: .seconds(100))
            outcome = Outcome(startedAt: startedAt, started: started, status: response.status, error: nil)
        } catch {
            outcome = Outcome(startedAt: startedAt, started: started, status: nil, error: "\(error)")
        }
        outcomes.withLock { $0.append(outcome) }
    }

    /// Stops sending and returns every outcome once all are in.
    func finish() throws -> [Outcome] {
        running.store(false, ordering: .releasing)
        guard group.wait(timeout: .now() + 120) == .success else {
            throw TestSupportError("webhooks still unanswered 120 s after the load stopped")
        }
        return outcomes.withLock { $0 }
    }
}
