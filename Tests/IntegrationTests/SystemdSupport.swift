import Foundation
import Glibc
import Synchronization
import TestSupport

/// Plays systemd's side of `sd_notify`: a Unix datagram socket the daemon is told about through
/// `NOTIFY_SOCKET`. Every datagram is kept, in arrival order, with the time it arrived.
final class NotifyListener: @unchecked Sendable {
    // `fd` is set once in init; the reader thread and `close` are ordered by `open`.
    let path: String
    private let fd: Int32
    private let open = Atomic<Bool>(true)
    private let received = Mutex<[Message]>([])
    private let done = DispatchSemaphore(value: 0)

    struct Message: Sendable {
        let at: ContinuousClock.Instant
        let assignments: [String]
        func has(_ assignment: String) -> Bool { assignments.contains(assignment) }
        func value(_ key: String) -> String? {
            assignments.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
    }

    init() throws {
        // sun_path holds 108 bytes: keep the name short.
        path = "/tmp/ai-notify-\(UUID().uuidString.prefix(8)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: errno \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestSupportError("bind \(path): errno \(errno)") }
        // A short receive timeout lets the reader notice `close` without a second descriptor.
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in readLoop() }
        thread.start()
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while open.load(ordering: .acquiring) {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { continue }
            let text = String(decoding: buffer[0..<count], as: UTF8.self)
            let message = Message(at: .now, assignments: text.split(separator: "\n").map(String.init))
            received.withLock { $0.append(message) }
        }
        done.signal()
    }

    var messages: [Message] { received.withLock { $0 } }

    /// Waits until a message after index `from` satisfies `predicate`; returns its index.
    @discardableResult
    func wait(
        for what: String, after from: Int = -1, timeout: Duration = .seconds(30),
        _ predicate: (Message) -> Bool
    ) throws -> Int {
        var found: Int?
        try waitUntil(timeout: timeout, pollEvery: .milliseconds(20), what) {
            let all = messages
            found = all.indices.first { $0 > from && predicate(all[$0]) }
            return found != nil
        }
        return found!
    }

    func close() {
        guard open.exchange(false, ordering: .acquiringAndReleasing) else { return }
        done.wait()
        Glibc.close(fd)
        unlink(path)
    }

    deinit { close() }
}

/// A child started with `posix_spawn`, for what Foundation's Process cannot do: put a descriptor of
/// ours at a fixed number (socket activation's fd 3). The child gets a clean signal mask and default
/// signal actions (the test runner blocks signals, and a child inherits that). Use `daemonCommand`
/// to run the daemon through bash, which closes every other inherited descriptor first.
final class SpawnedProcess: @unchecked Sendable {
    // `pid` and `status` are touched only by the owning test.
    let pid: pid_t
    let logPath: String
    private var status: Int32?

    init(executable: String, arguments: [String], environment: [String: String], descriptor3: Int32?) throws {
        logPath = NSTemporaryDirectory() + "afterimage-spawn-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_APPEND, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var moved: Int32 = -1
        if var source = descriptor3 {
            if source == 3 {
                // dup2(3, 3) would keep close-on-exec; pass a copy instead.
                moved = fcntl(3, F_DUPFD_CLOEXEC, 10)
                source = moved
            }
            posix_spawn_file_actions_adddup2(&actions, source, 3)
        }
        defer { if moved >= 0 { Glibc.close(moved) } }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestSupportError("posix_spawn \(executable): \(rc)") }
        pid = child
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The exit status once the child has ended (nil while it runs).
    func exitStatus() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        // WIFEXITED / WEXITSTATUS are macros: decode by hand (low 7 bits: signal; next 8: status).
        status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        return status
    }

    /// SIGTERM, then the exit status (SIGKILL and an error after `timeout`).
    func terminate(timeout: Duration = .seconds(30)) throws -> Int32 {
        if let status = exitStatus() { return status }
        kill(pid, SIGTERM)
        do {
            try waitUntil(timeout: timeout, "spawned daemon to exit") { exitStatus() != nil }
        } catch {
            kill(pid, SIGKILL)
            _ = try? waitUntil(timeout: .seconds(5), "killed daemon to exit") { exitStatus() != nil }
            throw error
        }
        return exitStatus()!
    }

    deinit {
        if exitStatus() == nil {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)
        }
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

/// `/bin/bash` arguments that close every descriptor above 3 the test runner leaked (glibc's
/// closefrom action is not visible to Swift; other tests' pipes must not stay open in our daemon),
/// optionally set `LISTEN_PID` to the shell's pid, then exec `command`: the pid stays the same.
func daemonCommand(_ command: [String], setListenPID: Bool) -> [String] {
    let closeLeaked = #"for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 3 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null; done; "#
    return ["-c", closeLeaked + (setListenPID ? "export LISTEN_PID=$$; " : "") + #"exec "$@""#, "bash"] + command
}

/// The Prometheus text exposition format, parsed strictly enough to fail on malformed output:
/// every sample line is `name{label="value",...} number`, every family has a known `# TYPE`, and a
/// histogram's buckets are cumulative and end in `+Inf` equal to its `_count`.
struct PrometheusText {
    struct Sample: Hashable {
        let name: String
        let labels: [String: String]
    }

    var types: [String: String] = [:]
    var values: [Sample: Double] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw TestSupportError("bad TYPE line: \(line)")
                }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let (sample, value) = try Self.parseSample(String(line))
            guard values[sample] == nil else { throw TestSupportError("duplicate sample: \(line)") }
            values[sample] = value
            let family = Self.family(of: sample.name)
            guard types[family] != nil || types[sample.name] != nil else { throw TestSupportError("no TYPE before \(line)") }
        }
        try checkHistograms()
    }

    static func family(of name: String) -> String {
        for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    static func parseSample(_ line: String) throws -> (Sample, Double) {
        let nameEnd = line.firstIndex { $0 == "{" || $0 == " " } ?? line.endIndex
        let name = String(line[..<nameEnd])
        guard name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil else {
            throw TestSupportError("bad metric name in: \(line)")
        }
        var labels: [String: String] = [:]
        var rest = line[nameEnd...]
        if rest.first == "{" {
            guard let close = rest.lastIndex(of: "}") else { throw TestSupportError("unclosed labels: \(line)") }
            let body = rest[rest.index(after: rest.startIndex)..<close]
            let pattern = try NSRegularExpression(pattern: #"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?"#)
            let text = String(body)
            var covered = 0
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                guard match.range.location == covered else { throw TestSupportError("bad labels: \(line)") }
                covered = match.range.location + match.range.length
                labels[String(text[Range(match.range(at: 1), in: text)!])] = String(text[Range(match.range(at: 2), in: text)!])
            }
            guard covered == (text as NSString).length else { throw TestSupportError("bad labels: \(line)") }
            rest = rest[rest.index(after: close)...]
        }
        let fields = rest.split(separator: " ")
        guard (1...2).contains(fields.count), let value = Double(fields[0]) ?? (fields[0] == "+Inf" ? .infinity : nil) else {
            throw TestSupportError("bad value in: \(line)")
        }
        return (Sample(name: name, labels: labels), value)
    }

    func checkHistograms() throws {
        for (family, type) in types where type == "histogram" {
            let buckets = values.filter { $0.key.name == family + "_bucket" }
            let series = Set(buckets.keys.map { $0.labels.filter { $0.key != "le" } })
            for labels in series {
                let ordered = buckets.filter { $0.key.labels.filter { $0.key != "le" } == labels }
                    .map { (Double($0.key.labels["le"] ?? "") ?? ($0.key.labels["le"] == "+Inf" ? .infinity : .nan), $0.value) }
                    .sorted { $0.0 < $1.0 }
                guard let last = ordered.last, last.0 == .infinity else { throw TestSupportError("\(family) has no +Inf bucket") }
                guard zip(ordered, ordered.dropFirst()).allSatisfy({ $0.1 <= $1.1 }) else {
                    throw TestSupportError("\(family) buckets are not cumulative")
                }
                guard values[Sample(name: family + "_count", labels: labels)] == last.1 else {
                    throw TestSupportError("\(family)_count differs from its +Inf bucket")
                }
            }
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? { values[Sample(name: name, labels: labels)] }
}
