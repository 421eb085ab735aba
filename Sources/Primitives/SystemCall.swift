import Glibc

/// A system call that failed: what was being done, and the `errno` it failed with.
///
/// The description is `operation: reason` (`cannot create /var/spool/x.part: No space left on device`),
/// so callers name the operation the way a reader of the log needs it and wrap the error in their own
/// domain error without losing the reason.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// The C library's text for `errno` (`strerror`).
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String { "\(operation): \(reason)" }
}

/// Runs a system call that returns -1 and sets `errno` on failure: again while it is interrupted by a
/// signal (EINTR), and throws `SystemCallError` for any other failure; otherwise returns its result.
///
/// One shape for every raw call (as swift-nio's `syscall` wrapper does), so no call site forgets EINTR or
/// reads `errno` after something else has overwritten it. `operation` is only evaluated on failure. A
/// call whose timeout should shrink across retries (poll) computes it inside `call`. Not for `close`,
/// which must not be retried on Linux. swift-system's `FileDescriptor` does this for open, read and
/// write only (not poll, fsync, rename, kill or mmap), and the lower modules take no package dependency.
@inlinable
public func systemCall<Result: FixedWidthInteger>(
    _ operation: @autoclosure () -> String, _ call: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = call()
        guard result == -1 else { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemCallError(operation(), errno: code)
    }
}

/// Writes all of `bytes` to `descriptor`, continuing after short writes and interruptions.
public func writeAll(
    _ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, _ operation: @autoclosure () -> String
) throws(SystemCallError) {
    var offset = 0
    while offset < bytes.count {
        offset += try systemCall(operation()) { write(descriptor, bytes.baseAddress! + offset, bytes.count - offset) }
    }
}

/// `writeAll` of an array's bytes.
public func writeAll(_ descriptor: Int32, _ bytes: [UInt8], _ operation: @autoclosure () -> String) throws(SystemCallError) {
    var failure: SystemCallError?
    bytes.withUnsafeBytes { raw in
        do throws(SystemCallError) {
            try writeAll(descriptor, raw, operation())
        } catch {
            failure = error
        }
    }
    if let failure { throw failure }
}
