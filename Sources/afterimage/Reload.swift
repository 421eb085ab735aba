import Afterimage
import ArgumentParser
import Foundation
import Glibc
import Primitives

/// `afterimage reload`: the unit's `ExecReload=`. It sends SIGHUP to the daemon and waits until the
/// daemon says it has reloaded, so that when `systemctl reload afterimage` returns the new
/// configuration is in force (a rotated API token works on the very next request), and a refused
/// configuration makes `systemctl reload` fail instead of passing silently.
///
/// Why not `ExecReload=/bin/kill -HUP $MAINPID`: a minimal Debian has no `/bin/kill` (procps is not
/// essential), and systemd 252 ends a reload as soon as `ExecReload=` exits, so a bare signal would
/// let `systemctl reload` return before the daemon had read the new file. (systemd 253's
/// `Type=notify-reload` does this itself; Debian 12 has 252.)
struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running daemon reload its configuration (SIGHUP) and wait until it has; for ExecReload=.",
        discussion: """
            Under systemd the daemon confirms each reload in $RUNTIME_DIRECTORY (RuntimeDirectory=afterimage), \
            and this command waits for that: exit 0 when the new configuration is in force, 78 when the \
            daemon refused it (the running one is kept; the journal says why), 1 when no answer came. \
            Without $RUNTIME_DIRECTORY it only sends the signal.
            """)

    @Option(help: "The daemon's process id (default: $MAINPID, which systemd sets for ExecReload=).")
    var pid: Int32?

    @Option(help: "Seconds to wait for the daemon's confirmation.")
    var timeout: Int = 30

    func run() throws {
        guard let pid = pid ?? ProcessInfo.processInfo.environment["MAINPID"].flatMap(Int32.init), pid > 0 else {
            throw ValidationError("no --pid and no $MAINPID: which daemon should reload?")
        }
        let receipts = ReloadReceipt(environment: ProcessInfo.processInfo.environment)
        let sent = SystemdNotifier.monotonicMicroseconds()
        do throws(SystemCallError) {
            _ = try systemCall("afterimage: cannot signal process \(pid)") { kill(pid, SIGHUP) }
        } catch {
            printError(error.description)
            throw ExitStatus.runtimeFailure
        }
        guard let receipts else {
            printError("afterimage: sent SIGHUP to \(pid); not waiting for it ($RUNTIME_DIRECTORY is not set)")
            return
        }
        // Polling a small file every 20 ms for at most `timeout` seconds: simpler than inotify and
        // costs nothing that matters for a command run once per reload.
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            if let receipt = receipts.read(), receipt.startedAt >= sent {
                guard receipt.applied else {
                    printError("afterimage: the daemon refused the new configuration and keeps the running one; `journalctl -u afterimage` says why")
                    throw ExitStatus.configurationError
                }
                return
            }
            guard kill(pid, 0) == 0 else {
                printError("afterimage: process \(pid) ended before confirming the reload")
                throw ExitStatus.runtimeFailure
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        printError("afterimage: process \(pid) did not confirm the reload within \(timeout) s")
        throw ExitStatus.runtimeFailure
    }
}

/// The daemon's answer to a SIGHUP, a one-line file in `$RUNTIME_DIRECTORY` that `afterimage reload`
/// waits for: when the reload began (CLOCK_MONOTONIC, so a confirmation of an earlier reload is never
/// taken for this one) and whether the new configuration was applied.
struct ReloadReceipt: Sendable {
    let path: String

    /// Nil outside systemd's `RuntimeDirectory=` (the variable may list several, separated by `:`).
    init?(environment: [String: String]) {
        guard let directory = environment["RUNTIME_DIRECTORY"]?.split(separator: ":").first, !directory.isEmpty else {
            return nil
        }
        path = directory + "/reload-receipt"
    }

    struct Entry: Sendable {
        let startedAt: UInt64
        let applied: Bool
    }

    func read() -> Entry? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let startedAt = UInt64(fields[0]), ["applied", "refused"].contains(fields[1]) else { return nil }
        return Entry(startedAt: startedAt, applied: fields[1] == "applied")
    }

    /// Written to a temporary name and renamed, so a reader never sees half a line.
    func record(startedAt: UInt64, applied: Bool) throws {
        let temporary = path + ".tmp"
        try Data("\(startedAt) \(applied ? "applied" : "refused")\n".utf8).write(to: URL(fileURLWithPath: temporary))
        _ = try systemCall("cannot replace \(path)") { rename(temporary, path) }
    }
}
