import Glibc
import Primitives

/// Loopback sockets for tests: the one copy of the sockaddr plumbing the suites need.
public enum LoopbackSocket {
    /// A TCP socket bound to 127.0.0.1:`port` (0: the kernel picks) and listening with `backlog`, and
    /// the port it got: what systemd passes under socket activation, or what a test server accepts on.
    public static func listening(port: Int = 0, backlog: Int32 = 64) throws -> (fd: Int32, port: Int) {
        let fd = try bound(port: port)
        do {
            _ = try systemCall("listen") { listen(fd, backlog) }
            return (fd, try boundPort(fd))
        } catch {
            close(fd)
            throw error
        }
    }

    /// A TCP socket bound to 127.0.0.1:`port`, not yet listening (close-on-exec).
    public static func bound(port: Int) throws -> Int32 {
        let fd = try systemCall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var address = loopback(port: port)
        do {
            _ = try systemCall("bind 127.0.0.1:\(port)") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// The local port of a bound socket.
    public static func boundPort(_ fd: Int32) throws -> Int {
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try systemCall("getsockname") {
            withUnsafeMutablePointer(to: &actual) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    /// A blocking connection to 127.0.0.1:`port` whose reads and writes give up after `timeout`, so a broken
    /// server fails the test instead of hanging it. Throws `SystemCallError` (ECONNREFUSED, …) on refusal.
    public static func connect(port: Int, timeout: Duration = .seconds(10)) throws(SystemCallError) -> Int32 {
        let fd = try systemCall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        do throws(SystemCallError) {
            _ = try systemCall("connect to 127.0.0.1:\(port)") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
