import Glibc

/// An address to bind, resolved from the configured host before the daemon starts so that a
/// bad host is reported as a configuration error naming it, not as an opaque start failure.
struct SocketAddress {
    var storage = sockaddr_storage()
    var isIPv6: Bool { Int32(storage.ss_family) == AF_INET6 }

    init(host: String, port: Int) throws(HTTPServerError) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result, let address = first.pointee.ai_addr else {
            if let result { freeaddrinfo(result) }
            throw HTTPServerError(.invalidAddress, "cannot resolve http host \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let length = Int(first.pointee.ai_addrlen)
        guard length <= MemoryLayout<sockaddr_storage>.size else {
            throw HTTPServerError(.invalidAddress, "http host \(host) resolved to an unsupported address")
        }
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: address, count: length))
        }
    }
}
