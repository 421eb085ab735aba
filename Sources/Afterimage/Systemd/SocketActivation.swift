import Foundation
import Glibc

/// Socket activation (`sd_listen_fds(3)`): systemd opens the listening socket itself, from
/// `afterimage.socket`, and hands it over as descriptor 3 with `LISTEN_FDS` and `LISTEN_PID`.
/// Connections that arrive while the daemon restarts wait in that socket's backlog instead of being
/// refused. `LISTEN_PID` must be our own pid: the variables are otherwise meant for another process
/// (a parent that did not clear them) and the descriptor is not ours to use.
public enum SocketActivation {
    /// The first passed descriptor, `SD_LISTEN_FDS_START`.
    public static let firstDescriptor: Int32 = 3

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { "socket activation: \(message)" }
    }

    /// The inherited listening socket, or nil when none was passed (fall back to `http.host`/`http.port`).
    /// Throws when systemd passed something that is not a listening stream socket: serving elsewhere
    /// would silently ignore the operator's `afterimage.socket`.
    public static func listeningSocket(
        environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()
    ) throws(Failure) -> Int32? {
        guard let count = descriptorCount(environment: environment, pid: pid) else { return nil }
        guard count == 1 else {
            throw Failure(message: "LISTEN_FDS=\(count): afterimage.socket must have exactly one ListenStream=")
        }
        let fd = firstDescriptor
        var listening: Int32 = 0
        var type: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening == 1 else {
            throw Failure(message: "descriptor \(fd) is not a listening socket")
        }
        size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0, type == Int32(SOCK_STREAM.rawValue) else {
            throw Failure(message: "descriptor \(fd) is not a stream socket (ListenStream=)")
        }
        // Like sd_listen_fds: the descriptor must not leak into anything we execute.
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        return fd
    }

    /// `LISTEN_FDS` when `LISTEN_PID` names us; nil otherwise.
    static func descriptorCount(environment: [String: String], pid: Int32) -> Int? {
        guard let listenPID = environment["LISTEN_PID"].flatMap(Int32.init), listenPID == pid,
            let count = environment["LISTEN_FDS"].flatMap(Int.init), count > 0
        else { return nil }
        return count
    }

    /// Clears the variables so no process we might start believes the sockets are its own.
    public static func clearEnvironment() {
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) }
    }
}
