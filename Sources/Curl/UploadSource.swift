import Glibc
import Primitives

/// The request body as libcurl's read callback sees it: a byte array or a file range, read piecewise
/// with pread so a multipart part is never loaded whole, and rewindable (libcurl resends a body when a
/// reused keep-alive connection turns out to be closed).
final class UploadSource {
    private enum Storage {
        case bytes([UInt8])
        case file(descriptor: Int32, offset: Int64)
    }

    private let storage: Storage
    let length: Int64
    private var position: Int64 = 0
    /// Set when reading failed, so the transfer reports `.bodySourceFailed` rather than a curl abort.
    private(set) var failure: String?

    init(bytes: [UInt8]) {
        storage = .bytes(bytes)
        length = Int64(bytes.count)
    }

    /// Opens the file and checks the range lies inside it, before anything is sent.
    init(path: String, offset: Int64, length: Int64) throws(CurlError) {
        guard offset >= 0, length >= 0 else {
            throw CurlError(.bodySourceFailed, "negative file range (offset \(offset), length \(length))")
        }
        let descriptor: Int32
        var info = stat()
        do throws(SystemCallError) {
            descriptor = try systemCall("cannot open upload file") { open(path, O_RDONLY | O_CLOEXEC) }
            do throws(SystemCallError) {
                _ = try systemCall("cannot stat upload file") { fstat(descriptor, &info) }
            } catch {
                close(descriptor)
                throw error
            }
        } catch {
            throw CurlError(.bodySourceFailed, error.description)
        }
        guard Int64(info.st_size) >= offset + length else {
            close(descriptor)
            throw CurlError(.bodySourceFailed, "upload range \(offset)+\(length) is past the end of the file (\(info.st_size) bytes)")
        }
        storage = .file(descriptor: descriptor, offset: offset)
        self.length = length
    }

    deinit {
        if case .file(let descriptor, _) = storage { close(descriptor) }
    }

    /// Fills up to `capacity` bytes; returns the count (0 at the end) or nil on a read error.
    func read(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let wanted = Int(min(Int64(capacity), length - position))
        guard wanted > 0 else { return 0 }
        switch storage {
        case .bytes(let bytes):
            bytes.withUnsafeBytes { raw in
                buffer.copyMemory(from: raw.baseAddress! + Int(position), byteCount: wanted)
            }
            position += Int64(wanted)
            return wanted
        case .file(let descriptor, let offset):
            let count: Int
            do throws(SystemCallError) {
                count = try systemCall("reading upload file") { pread(descriptor, buffer, wanted, off_t(offset + position)) }
            } catch {
                failure = error.description
                return nil
            }
            if count == 0 {
                failure = "upload file shrank while it was being sent"
                return nil
            }
            position += Int64(count)
            return count
        }
    }

    /// Rewinds to `offset` bytes into the body; false if out of range.
    func seek(to offset: Int64) -> Bool {
        guard offset >= 0, offset <= length else { return false }
        position = offset
        return true
    }
}
