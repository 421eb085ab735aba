import Foundation
import Glibc
import TestSupport

/// A private PostgreSQL cluster (scripts/pg.sh, like TestSupport's `PrivatePostgres`) that this
/// suite can stop and start.
///
/// Why not `PrivatePostgres`: its `runCommand` waits with Foundation's `Process.waitUntilExit`,
/// which on Linux learns that a child exited when a socket it passes to the child closes
/// (swift-corelibs-foundation#4795). `pg_ctl start` leaves the postmaster running with that socket
/// inherited, so `PrivatePostgres.init` never returns. This runner spawns pg.sh with posix_spawn,
/// closes every inherited descriptor above stderr before the script runs (so the postmaster
/// holds none of ours), and waits with waitpid under a deadline. Same interface, so switching back
/// once TestSupport is fixed is a one-line change.
final class RestartablePostgres: Sendable {
    let directory: String
    let port: Int
    let database: String
    var url: String { "postgresql://afterimage@127.0.0.1:\(port)/\(database)" }

    private var script: String { TestEnvironment.scriptsDirectory.appendingPathComponent("pg.sh").path }

    init(database: String = "afterimage") throws {
        directory = NSTemporaryDirectory() + "afterimage-pg-" + UUID().uuidString
        port = freePort()
        self.database = database
        try start()
    }

    func start() throws { try run([script, "start", directory, String(port), database]) }
    func stop() throws { try run([script, "stop", directory]) }

    func destroy() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `/bin/bash ARGS` with inherited descriptors closed; throws on non-zero exit or after
    /// `timeout`, with the script's output in the error.
    private func run(_ arguments: [String], timeout: Duration = .seconds(120)) throws {
        let log = NSTemporaryDirectory() + "pq-pgsh-" + UUID().uuidString + ".log"
        defer { unlink(log) }
        let closeInherited =
            #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null; exec /bin/bash "$@""#
        let argv = ["/bin/bash", "-c", closeInherited, "bash"] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, &cArguments, environ)
        guard spawned == 0 else { throw TestSupportError("posix_spawn pg.sh failed: \(spawned)") }

        var status: Int32 = 0
        let deadline = ContinuousClock.now + timeout
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                throw TestSupportError("pg.sh \(arguments.dropFirst().first ?? "") timed out after \(timeout)")
            }
            usleep(20_000)
        }
        let exitedCleanly = status & 0x7f == 0 && (status >> 8) & 0xff == 0
        guard exitedCleanly else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestSupportError("pg.sh \(arguments.dropFirst().joined(separator: " ")) failed (status \(status)): \(output)")
        }
    }
}
