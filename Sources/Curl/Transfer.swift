import CCurl
import Glibc

/// Where response body bytes go.
enum BodyDestination {
    /// 2xx bodies stream here; other statuses are kept in a small buffer instead.
    case sink((UnsafeRawBufferPointer) throws -> Void)
    /// Every body is collected in memory.
    case collect
}

/// Everything the C callbacks of one request (one redirect hop) read and write. libcurl calls them on
/// the thread running curl_easy_perform, one at a time, so no locking is needed; the object is reached
/// through an unretained `Unmanaged` pointer that the caller keeps alive for the whole perform.
final class Transfer {
    let destination: BodyDestination
    let isHead: Bool
    /// Largest 2xx body accepted (nil: unlimited).
    let successLimit: Int64?
    /// Largest non-2xx body kept; the transfer stops there without an error.
    let otherLimit: Int
    let addressPolicy: (@Sendable (IPAddress) -> Bool)?
    let shouldAbort: (@Sendable () -> Bool)?
    let upload: UploadSource?

    private(set) var status = 0
    private(set) var headers: [(String, String)] = []
    private var headersComplete = false
    private(set) var body: [UInt8] = []
    private(set) var bytesReceived: Int64 = 0
    /// A non-2xx body was cut at `otherLimit`; the write error libcurl reports for it is expected.
    private(set) var bodyTruncated = false
    /// Why a callback stopped the transfer, when it was one of ours.
    private(set) var failure: (code: CurlError.Code, message: String)?
    private(set) var sinkError: (any Error)?
    private(set) var blockedAddresses: [IPAddress] = []

    /// libcurl writes its human-readable error here (CURLOPT_ERRORBUFFER).
    let errorBuffer: UnsafeMutablePointer<CChar>

    static let maxHeaderCount = 500

    init(
        destination: BodyDestination, isHead: Bool, successLimit: Int64?, otherLimit: Int,
        options: CurlOptions, upload: UploadSource?
    ) {
        self.destination = destination
        self.isHead = isHead
        self.successLimit = successLimit
        self.otherLimit = otherLimit
        self.addressPolicy = options.addressPolicy
        self.shouldAbort = options.shouldAbort
        self.upload = upload
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit { errorBuffer.deallocate() }

    var errorText: String { String(cString: errorBuffer) }

    private var isSuccess: Bool { (200...299).contains(status) }

    // MARK: callbacks' bodies

    func receiveHeader(_ data: UnsafeRawBufferPointer) -> Bool {
        // Trim CR LF as bytes: in Swift "\r\n" is one Character, so Character-wise trimming misses it.
        var end = data.count
        while end > 0, data[end - 1] == 0x0d || data[end - 1] == 0x0a { end -= 1 }
        let line = Substring(String(decoding: data[..<end], as: UTF8.self))
        if line.hasPrefix("HTTP/") {
            // A new status line: 100 Continue or a new response. Only the final one's headers count.
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
            headers = []
            headersComplete = false
            return true
        }
        if headersComplete { return true }  // trailers after a chunked body: ignored
        if line.isEmpty {
            guard status >= 200 else { return true }  // end of an interim (1xx) response
            headersComplete = true
            return checkAnnouncedLength()
        }
        if let first = line.first, first == " " || first == "\t", !headers.isEmpty {
            headers[headers.count - 1].1 += " " + line.trimmingSpaces()  // obsolete line folding
            return true
        }
        guard let colon = line.firstIndex(of: ":"), headers.count < Self.maxHeaderCount else { return true }
        headers.append((String(line[..<colon]), String(line[line.index(after: colon)...].trimmingSpaces())))
        return true
    }

    /// Refuses a 2xx body whose Content-Length already exceeds the limit, before reading any of it.
    private func checkAnnouncedLength() -> Bool {
        guard isSuccess, !isHead, let limit = successLimit else { return true }
        guard let value = headers.last(where: { $0.0.caseInsensitiveEquals("content-length") })?.1,
            let announced = Int64(value)
        else { return true }
        if announced > limit {
            failure = (.tooLarge, "Content-Length \(announced) exceeds the limit of \(limit) bytes")
            return false
        }
        return true
    }

    func receiveBody(_ data: UnsafeRawBufferPointer) -> Bool {
        let count = Int64(data.count)
        if isSuccess {
            if let limit = successLimit, bytesReceived + count > limit {
                failure = (.tooLarge, "body exceeds the limit of \(limit) bytes")
                return false
            }
            bytesReceived += count
            switch destination {
            case .sink(let sink):
                do { try sink(data) } catch {
                    sinkError = error
                    failure = (.sinkFailed, "the sink failed after \(bytesReceived - count) bytes")
                    return false
                }
            case .collect:
                body.append(contentsOf: data)
            }
            return true
        }
        bytesReceived += count
        let room = otherLimit - body.count
        if data.count > room {
            body.append(contentsOf: data.prefix(max(room, 0)))
            bodyTruncated = true
            return false
        }
        body.append(contentsOf: data)
        return true
    }

    func readUpload(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard let upload else { return 0 }
        guard let count = upload.read(into: buffer, capacity: capacity) else {
            failure = (.bodySourceFailed, upload.failure ?? "reading the request body failed")
            return nil
        }
        return count
    }

    func progress() -> Bool {
        if let shouldAbort, shouldAbort() {
            failure = (.aborted, "aborted on request")
            return false
        }
        return true
    }

    /// The address guard; records refusals so the error says `.blockedAddress`.
    func allows(_ address: IPAddress?) -> Bool {
        guard let addressPolicy else { return true }
        guard let address else { return false }
        if addressPolicy(address) { return true }
        blockedAddresses.append(address)
        return false
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}

// MARK: - C callbacks: plain nonisolated functions, context through an unretained Unmanaged pointer.

private func transfer(_ pointer: UnsafeMutableRawPointer?) -> Transfer {
    Unmanaged<Transfer>.fromOpaque(pointer!).takeUnretainedValue()
}

/// CURLOPT_WRITEFUNCTION: returning less than given makes libcurl stop with CURLE_WRITE_ERROR.
func curlWriteCallback(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
    _ context: UnsafeMutableRawPointer?
) -> Int {
    let total = size * count
    let ok = transfer(context).receiveBody(UnsafeRawBufferPointer(start: data, count: total))
    return ok ? total : 0
}

/// CURLOPT_HEADERFUNCTION: one complete header line per call, status lines included.
func curlHeaderCallback(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
    _ context: UnsafeMutableRawPointer?
) -> Int {
    let total = size * count
    let ok = transfer(context).receiveHeader(UnsafeRawBufferPointer(start: data, count: total))
    return ok ? total : 0
}

/// CURLOPT_READFUNCTION: the upload body.
func curlReadCallback(
    _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
    _ context: UnsafeMutableRawPointer?
) -> Int {
    guard let buffer else { return ccurl_readfunc_abort() }
    return transfer(context).readUpload(into: UnsafeMutableRawPointer(buffer), capacity: size * count)
        ?? ccurl_readfunc_abort()
}

/// CURLOPT_SEEKFUNCTION: rewinds the upload body for a resend.
func curlSeekCallback(_ context: UnsafeMutableRawPointer?, _ offset: curl_off_t, _ origin: Int32) -> Int32 {
    guard origin == SEEK_SET, let upload = transfer(context).upload, upload.seek(to: Int64(offset)) else {
        return Int32(CURL_SEEKFUNC_CANTSEEK)
    }
    return Int32(CURL_SEEKFUNC_OK)
}

/// CURLOPT_XFERINFOFUNCTION: non-zero aborts with CURLE_ABORTED_BY_CALLBACK.
func curlProgressCallback(
    _ context: UnsafeMutableRawPointer?, _ downloadTotal: curl_off_t, _ downloaded: curl_off_t,
    _ uploadTotal: curl_off_t, _ uploaded: curl_off_t
) -> Int32 {
    transfer(context).progress() ? 0 : 1
}

/// CURLOPT_OPENSOCKETFUNCTION: runs after DNS for every address libcurl tries. Refused addresses get
/// CURL_SOCKET_BAD, so no packet is ever sent to them.
func curlOpenSocketCallback(
    _ context: UnsafeMutableRawPointer?, _ purpose: curlsocktype,
    _ address: UnsafeMutablePointer<curl_sockaddr>?
) -> curl_socket_t {
    guard let address else { return ccurl_socket_bad() }
    var raw = [UInt8](repeating: 0, count: 16)
    let length = Int(ccurl_sockaddr_ip(address, &raw))
    let ip = length > 0 ? IPAddress(bytes: Array(raw.prefix(length))) : nil
    guard transfer(context).allows(ip) else { return ccurl_socket_bad() }
    let type = address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue)
    return socket(address.pointee.family, type, address.pointee.protocol)
}
