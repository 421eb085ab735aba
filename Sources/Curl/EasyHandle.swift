import CCurl

/// A libcurl easy handle. `@unchecked Sendable` because libcurl allows a handle to move between
/// threads as long as only one uses it at a time, which `CurlSession`'s mutex guarantees.
struct EasyHandle: @unchecked Sendable {
    private(set) var pointer: UnsafeMutableRawPointer?

    /// Creates the handle on first use so `CurlSession.init` cannot fail.
    mutating func get() throws(CurlError) -> UnsafeMutableRawPointer {
        if let pointer { return pointer }
        let initResult = ccurl_global_init_once()
        guard initResult == CURLE_OK else {
            throw CurlError(.transport(Int32(initResult.rawValue)), "curl_global_init failed", curlCode: Int32(initResult.rawValue))
        }
        guard let created = curl_easy_init() else {
            throw CurlError(.transport(Int32(CURLE_FAILED_INIT.rawValue)), "curl_easy_init failed")
        }
        pointer = created
        return created
    }

    /// Whether the handle's connection pool may hold connections opened without an address policy.
    private var mayHoldUnvettedConnections = false

    /// The handle for a request, with a connection pool it may safely reuse. Kept-alive connections are
    /// reused without calling CURLOPT_OPENSOCKETFUNCTION again, so a guarded request must not inherit one
    /// that an unguarded request opened (say, to a private S3 endpoint): the pool is dropped first.
    mutating func get(guarded: Bool) throws(CurlError) -> UnsafeMutableRawPointer {
        if guarded && mayHoldUnvettedConnections { cleanup() }
        let handle = try get()
        if !guarded { mayHoldUnvettedConnections = true }
        return handle
    }

    mutating func cleanup() {
        if let pointer { curl_easy_cleanup(pointer) }
        pointer = nil
        mayHoldUnvettedConnections = false
    }
}

/// Typed setters that turn a refused option into a `CurlError` (libcurl refuses, e.g., an unknown
/// protocol name in CURLOPT_PROTOCOLS_STR).
struct EasyOptions {
    let handle: UnsafeMutableRawPointer

    private func check(_ code: CURLcode, _ option: CURLoption) throws(CurlError) {
        guard code == CURLE_OK else {
            let message = "libcurl refused option \(option.rawValue): \(String(cString: curl_easy_strerror(code)))"
            let kind: CurlError.Code = code == CURLE_UNSUPPORTED_PROTOCOL ? .protocolNotAllowed : .transport(Int32(code.rawValue))
            throw CurlError(kind, message, curlCode: Int32(code.rawValue))
        }
    }

    func set(_ option: CURLoption, _ value: Int) throws(CurlError) {
        try check(ccurl_easy_setopt_long(handle, option, value), option)
    }
    func set(_ option: CURLoption, large value: Int64) throws(CurlError) {
        try check(ccurl_easy_setopt_off_t(handle, option, curl_off_t(value)), option)
    }
    func set(_ option: CURLoption, _ value: String) throws(CurlError) {
        try check(ccurl_easy_setopt_string(handle, option, value), option)
    }
    func set(_ option: CURLoption, pointer value: UnsafeMutableRawPointer?) throws(CurlError) {
        try check(ccurl_easy_setopt_pointer(handle, option, value), option)
    }
    func set(_ option: CURLoption, list: UnsafeMutablePointer<curl_slist>?) throws(CurlError) {
        try check(ccurl_easy_setopt_slist(handle, option, list), option)
    }
    func set(_ option: CURLoption, data callback: curl_write_callback) throws(CurlError) {
        try check(ccurl_easy_setopt_data_function(handle, option, callback), option)
    }
    func set(_ option: CURLoption, xferinfo callback: curl_xferinfo_callback) throws(CurlError) {
        try check(ccurl_easy_setopt_xferinfo_function(handle, option, callback), option)
    }
    func set(_ option: CURLoption, seek callback: curl_seek_callback) throws(CurlError) {
        try check(ccurl_easy_setopt_seek_function(handle, option, callback), option)
    }
    func set(_ option: CURLoption, opensocket callback: curl_opensocket_callback) throws(CurlError) {
        try check(ccurl_easy_setopt_opensocket_function(handle, option, callback), option)
    }

    func long(_ info: CURLINFO) -> Int {
        var value = 0
        _ = ccurl_easy_getinfo_long(handle, info, &value)
        return value
    }
    func string(_ info: CURLINFO) -> String? {
        var value: UnsafePointer<CChar>? = nil
        guard ccurl_easy_getinfo_string(handle, info, &value) == CURLE_OK, let value else { return nil }
        return String(cString: value)
    }
}
