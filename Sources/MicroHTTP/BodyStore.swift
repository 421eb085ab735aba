import CMicroHTTPD
import Glibc
import Primitives

/// Where a request body goes while it arrives: memory up to `spillThreshold` bytes, then an unnamed file
/// in `spillDirectory` (when one is configured).
///
/// Why: a large body (a Stability result of tens of MiB) held in memory until its signature is checked
/// lets a few concurrent senders of forged bodies grow the daemon by hundreds of MiB. Spilled, it costs
/// page cache the kernel can write out, not resident memory, and a forged one is dropped unread. A body
/// that passed its route's checks is read back into memory for its handler, unless the route takes
/// bodies as files (`Router.add(…, bodyAsFile: true)`): its handler then gets the `BodyFile` itself.
///
/// Only the event thread serving the connection touches a store; `finish()` hands the bytes over.
/// Capacity is never reserved from the client's declared length: memory grows with bytes received.
final class BodyStore {
    private let spillDirectory: String?
    private let spillThreshold: Int
    private var memory: [UInt8] = []
    private var file: BodyFile?
    /// Bytes for the file, written in large pieces rather than one write per network read.
    private var staged: [UInt8] = []
    private(set) var count = 0

    static let stagingBytes = 256 * 1024

    init(spillDirectory: String?, spillThreshold: Int) {
        self.spillDirectory = spillDirectory
        self.spillThreshold = spillThreshold
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) {
        count += bytes.count
        if let file {
            staged.append(contentsOf: bytes)
            if staged.count >= Self.stagingBytes { try flush(to: file) }
            return
        }
        guard let spillDirectory, memory.count + bytes.count > spillThreshold else {
            memory.append(contentsOf: bytes)
            return
        }
        let fd = try systemCall("create a spill file in \(spillDirectory)") { cmhd_open_unnamed_file(spillDirectory) }
        let spilled = BodyFile(fd: fd)
        file = spilled
        staged = memory  // what was kept so far is written first; its buffer then serves as the staging one
        memory = []
        staged.append(contentsOf: bytes)
        if staged.count >= Self.stagingBytes { try flush(to: spilled) }
    }

    /// Frees what was kept (a refused body must not hold memory or disk until the request ends).
    func discard() {
        memory = []
        staged = []
        file = nil  // closes the descriptor: the unnamed file is gone
        count = 0
    }

    /// The whole body, in memory or in its file.
    func finish() throws(SystemCallError) -> CollectedBody {
        guard let file else {
            defer { memory = [] }
            return .memory(memory)
        }
        try flush(to: file)
        self.file = nil
        file.size = count
        return .spilled(file)
    }

    private func flush(to file: BodyFile) throws(SystemCallError) {
        try writeAll(file.fd, staged, "write a spilled body")
        staged.removeAll(keepingCapacity: true)
    }
}

enum CollectedBody {
    case memory([UInt8])
    case spilled(BodyFile)
}

/// A complete request body in an unnamed file (see `BodyStore`): what a route that takes bodies as files
/// gets instead of the bytes, so a handler can stream a body of tens of MiB (decode it, hash it, send it
/// to the database) without ever holding it in memory.
///
/// @unchecked Sendable around the descriptor: it is written only by the event thread that received the
/// body, then handed once to the one thread that runs the handler; after that it is only read with
/// `pread`, which keeps no file offset, so concurrent reads are safe. Closing it (deinit, once the request
/// and whoever kept a reference are done) removes the file.
public final class BodyFile: @unchecked Sendable {
    let fd: Int32
    /// The body's length in bytes, as received (never a length the client claimed).
    public internal(set) var size = 0

    init(fd: Int32) {
        self.fd = fd
    }

    deinit { close(fd) }

    /// Up to `buffer.count` bytes from `offset` into `buffer`; the number read (0 at the end).
    public func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        let wanted = min(buffer.count, max(0, size - offset))
        guard wanted > 0, let base = buffer.baseAddress else { return 0 }
        return try systemCall("read a spilled body back") { pread(fd, base, wanted, off_t(offset)) }
    }

    /// The bytes, read into exactly `size` bytes of memory (a size we counted, not one the client claimed).
    public func read() throws(SystemCallError) -> [UInt8] {
        var failure: SystemCallError?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var offset = 0
            while offset < size {
                do throws(SystemCallError) {
                    let n = try systemCall("read a spilled body back") { pread(fd, buffer.baseAddress! + offset, size - offset, off_t(offset)) }
                    // The file is ours and unnamed: shorter than what was written is an I/O error.
                    guard n > 0 else { throw SystemCallError("read a spilled body back", errno: EIO) }
                    offset += n
                } catch {
                    failure = error
                    break
                }
            }
            initialized = failure == nil ? size : 0
        }
        if let failure { throw failure }
        return bytes
    }
}
