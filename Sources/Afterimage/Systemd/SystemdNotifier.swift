import Foundation
import Glibc
import Primitives

/// Talks to the service manager over `$NOTIFY_SOCKET`, the way `sd_notify(3)` does, without linking
/// libsystemd: one `AF_UNIX` datagram per message, `KEY=value` lines. An address starting with `@`
/// is in the abstract namespace. Without the variable (not run by systemd, or `Type=simple`) every
/// call does nothing, so the daemon behaves the same under a shell, a test or a supervisor.
public struct SystemdNotifier: Sendable {
    /// The socket address as bytes (abstract addresses start with NUL); nil when notification is off.
    let address: [UInt8]?

    /// Reads `NOTIFY_SOCKET`. Only absolute paths and abstract names are accepted, as in sd_notify.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        address = environment["NOTIFY_SOCKET"].flatMap(Self.socketAddress)
    }

    /// A notifier that never sends (for `Daemon` users that are not the `serve` command).
    public static let disabled = SystemdNotifier(address: nil)

    init(address: [UInt8]?) { self.address = address }

    public var isEnabled: Bool { address != nil }

    /// Path bytes for `sockaddr_un.sun_path`: `@name` becomes NUL + name (abstract namespace).
    static func socketAddress(_ value: String) -> [UInt8]? {
        var bytes = Array(value.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@") else { return nil }
        if first == UInt8(ascii: "@") { bytes[0] = 0 }
        // sun_path is 108 bytes; a path needs its terminating NUL, an abstract name does not.
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        guard bytes.count < capacity || (bytes[0] == 0 && bytes.count <= capacity), bytes.count > 1 else { return nil }
        return bytes
    }

    /// Sends `KEY=value` lines as one datagram. Returns false when notification is off or the send
    /// failed; callers never stop working because the manager did not hear them.
    @discardableResult
    public func notify(_ assignments: [String]) -> Bool {
        guard let address, !assignments.isEmpty else { return false }
        let message = Array(assignments.joined(separator: "\n").utf8)
        guard let fd = try? systemCall("socket", { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }) else {
            return false
        }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { path in
            for (index, byte) in address.enumerated() { path[index] = byte }
        }
        // For an abstract name the length counts exactly its bytes; for a path, the bytes and NUL.
        let pathLength = address[0] == 0 ? address.count : address.count + 1
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathLength)
        let sent = message.withUnsafeBytes { body in
            try? systemCall("sendto") {
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL), $0, length)
                    }
                }
            }
        }
        return sent == message.count
    }

    @discardableResult
    public func notify(_ assignment: String) -> Bool { notify([assignment]) }

    /// `STATUS=` is free text shown by `systemctl status`; one line, bounded, so a long error
    /// cannot make the datagram too large.
    public static func status(_ text: String) -> String {
        let line = URLRedaction.redactingUserInfo(text).replacingOccurrences(of: "\n", with: " ")
        return "STATUS=" + String(line.prefix(400))
    }

    /// `MONOTONIC_USEC=` for `RELOADING=1`: CLOCK_MONOTONIC in microseconds, as systemd expects.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
