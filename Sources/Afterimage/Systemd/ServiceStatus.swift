import Synchronization

/// systemd's `STATUS=` line (what `systemctl status` shows), put together from what the daemon's parts
/// report: first what it is still waiting for, then where it serves, then the queue. Sent only when it
/// changes.
public final class ServiceStatus: Sendable {
    public enum Part: Int, Sendable, CaseIterable, Comparable {
        /// What readiness still waits for ("waiting for the database: …").
        case waiting
        /// "serving on port 8080".
        case serving
        /// "3 pending, 1 in flight; earliest deadline …".
        case queue

        public static func < (a: Part, b: Part) -> Bool { a.rawValue < b.rawValue }
    }

    private let notifier: SystemdNotifier
    private let state = Mutex<(parts: [Part: String], sent: String?)>(([:], nil))

    public init(notifier: SystemdNotifier) {
        self.notifier = notifier
    }

    /// Sets (or, with nil, clears) one part and sends the line if it changed.
    public func set(_ part: Part, _ text: String?) {
        let changed = state.withLock { state -> String? in
            state.parts[part] = text
            let line = Self.line(state.parts)
            guard line != state.sent else { return nil }
            state.sent = line
            return line
        }
        if let changed { notifier.notify(SystemdNotifier.status(changed)) }
    }

    /// The line as it stands.
    public var line: String { state.withLock { Self.line($0.parts) } }

    /// Sends `assignments` together with the current line (`READY=1` carries the status in the same
    /// datagram), `prefix` before it ("configuration reloaded"); the next change sends the plain line again.
    public func notify(_ assignments: [String], prefix: String? = nil) {
        let line = state.withLock { state in
            let line = Self.line(state.parts)
            state.sent = prefix == nil ? line : nil
            return [prefix, line.isEmpty ? nil : line].compactMap { $0 }.joined(separator: "; ")
        }
        notifier.notify(assignments + [SystemdNotifier.status(line)])
    }

    private static func line(_ parts: [Part: String]) -> String {
        parts.sorted { $0.key < $1.key }.map(\.value).joined(separator: "; ")
    }
}
