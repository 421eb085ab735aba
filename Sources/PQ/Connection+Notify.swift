import CLibPQ
import Foundation
import Glibc
import Primitives

/// A NOTIFY delivered to a listening connection.
public struct Notification: Sendable, Hashable {
    public let channel: String
    public let payload: String
    /// The server process that sent it (equals the listener's own `backendPID` for self-notifies).
    public let backendPID: Int32
}

extension Connection {
    /// PostgreSQL truncates identifiers to 63 bytes; a longer channel would LISTEN on one name and
    /// NOTIFY on another, so such names are refused instead.
    static let maximumChannelBytes = 63

    /// Starts receiving NOTIFYs on `channel`. The name is quoted with PQescapeIdentifier, so any
    /// text is one identifier. Use a dedicated connection for listening: a pooled one goes back to
    /// other users still subscribed.
    public func listen(_ channel: String) throws(PQError) {
        try query("LISTEN " + escapedChannel(channel))
    }

    public func unlisten(_ channel: String) throws(PQError) {
        try query("UNLISTEN " + escapedChannel(channel))
    }

    /// Sends a notification (`select pg_notify($1, $2)`: both travel as parameters). Inside a
    /// transaction it is delivered at COMMIT, which is how intake wakes workers only for rows
    /// that really exist.
    public func notify(_ channel: String, payload: String) throws(PQError) {
        _ = try escapedChannel(channel)
        try query("select pg_notify($1, $2)", [channel, payload])
    }

    /// Returns the notifications that have arrived, waiting up to `timeout` for the first one;
    /// [] when none came in time. Waits in poll(2) on the connection's socket, no busy loop.
    public func waitForNotifications(timeout: Duration) throws(PQError) -> [Notification] {
        let handle = try liveHandle()
        var received = drainNotifications(handle)
        let deadline = ContinuousClock.now + timeout
        while received.isEmpty {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return [] }
            let socket = PQsocket(handle)
            guard socket >= 0 else {
                throw PQError(code: .connectionLost, message: Self.errorMessage(handle))
            }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready: Int32
            do throws(SystemCallError) {
                // The timeout is worked out again after an interruption, so the deadline holds.
                ready = try systemCall("poll on the connection") {
                    poll(&descriptor, 1, Self.pollMilliseconds(max(.zero, deadline - ContinuousClock.now)))
                }
            } catch {
                throw PQError(code: .connectionLost, message: error.description)
            }
            if ready > 0 {
                guard PQconsumeInput(handle) == 1 else {
                    throw PQError(code: .connectionLost, message: Self.errorMessage(handle))
                }
                received = drainNotifications(handle)
            }
        }
        return received
    }

    /// True when an idle pooled connection still looks alive. Costs one poll(2) with a zero timeout,
    /// no round trip. A pooled connection never LISTENs, so anything the server sends it unprompted
    /// is bad news: usually the FATAL of a backend being terminated or a server shutting down. libpq
    /// files that FATAL as a mere notice and keeps the status OK until end of file arrives, which can
    /// come a moment later — so readable data alone condemns the connection. The rare false alarm
    /// (an unprompted ParameterStatus) costs one reconnect; a false "alive" costs a failed request.
    func probeIdle() -> Bool {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return false }
        let socket = PQsocket(handle)
        guard socket >= 0 else { return false }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    private func drainNotifications(_ handle: OpaquePointer) -> [Notification] {
        var notifications: [Notification] = []
        while let notify = PQnotifies(handle) {
            notifications.append(
                Notification(
                    channel: String(cString: notify.pointee.relname),
                    payload: notify.pointee.extra.map { String(cString: $0) } ?? "",
                    backendPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return notifications
    }

    private func escapedChannel(_ channel: String) throws(PQError) -> String {
        let handle = try liveHandle()
        let bytes = channel.utf8.count
        guard bytes > 0, bytes <= Self.maximumChannelBytes, !channel.utf8.contains(0) else {
            throw PQError(code: .invalidParameter, message: "a channel name must be 1 to \(Self.maximumChannelBytes) bytes without NUL")
        }
        guard let escaped = PQescapeIdentifier(handle, channel, bytes) else {
            throw PQError(code: .invalidParameter, message: Self.errorMessage(handle))
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    /// A poll(2) timeout in whole milliseconds, rounded up so a sub-millisecond remainder still
    /// sleeps instead of spinning.
    private static func pollMilliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: max(1, milliseconds))
    }
}
