import CMicroHTTPD

// Reading the parts of a request libmicrohttpd has parsed, and queuing the answer.

/// Collects (name, value) pairs from MHD_get_connection_values; lives only for the synchronous call.
private final class ValueCollector {
    var pairs: [(String, String)] = []
}

/// MHD_KeyValueIterator: appends one pair to the ValueCollector passed as `cls`.
nonisolated private func collectValue(
    _ cls: UnsafeMutableRawPointer?, _ kind: MHD_ValueKind, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?
) -> MHD_Result {
    guard let cls, let key else { return .YES }
    let collector = Unmanaged<ValueCollector>.fromOpaque(cls).takeUnretainedValue()
    collector.pairs.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
    return .YES
}

private func values(_ connection: OpaquePointer, _ kind: MHD_ValueKind) -> [(String, String)] {
    let collector = ValueCollector()
    withExtendedLifetime(collector) {
        _ = MHD_get_connection_values(connection, kind, collectValue, Unmanaged.passUnretained(collector).toOpaque())
    }
    return collector.pairs
}

/// Header fields, names lowercased, repeats joined with ", ".
func collectHeaders(_ connection: OpaquePointer) -> [String: String] {
    var headers: [String: String] = [:]
    for (name, value) in values(connection, .HEADER_KIND) {
        let key = name.lowercased()
        if let existing = headers[key] { headers[key] = existing + ", " + value } else { headers[key] = value }
    }
    return headers
}

/// Query arguments. libmicrohttpd hands them over still encoded (see cmhd_keep_escaped); text that
/// does not decode is kept as it came rather than dropped.
func collectQuery(_ connection: OpaquePointer) -> [String: String] {
    var query: [String: String] = [:]
    for (name, value) in values(connection, .GET_ARGUMENT_KIND) {
        let key = percentDecode(Substring(name), plusIsSpace: true) ?? name
        query[key] = percentDecode(Substring(value), plusIsSpace: true) ?? value
    }
    return query
}

func lookupHeader(_ connection: OpaquePointer, _ name: String) -> String? {
    MHD_lookup_connection_value(connection, .HEADER_KIND, name).map { String(cString: $0) }
}

func clientAddress(_ connection: OpaquePointer) -> String? {
    var buffer = [CChar](repeating: 0, count: 64)  // INET6_ADDRSTRLEN is 46
    guard cmhd_connection_client_address(connection, &buffer, buffer.count) == 1 else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Headers libmicrohttpd writes itself; a handler's copy would contradict the real framing.
private let framingHeaders: Set<String> = ["content-length", "transfer-encoding"]

/// Hands `response` to libmicrohttpd, which copies the body (MHD_RESPMEM_MUST_COPY, raw value 2) and
/// adds Content-Length. Copying is required: the bytes belong to a Swift array that is freed when this
/// returns, and MHD_RESPMEM_MUST_FREE (raw value 1) would have libmicrohttpd call free() on Swift's
/// buffer.
func queue(_ response: Response, on connection: OpaquePointer, draining: Bool) -> MHD_Result {
    // libmicrohttpd refuses status codes outside 100...999, and 1xx cannot be a final answer.
    let response =
        (200...999).contains(response.status)
        ? response : .error(status: 500, code: "internal_error", message: "the handler produced an invalid status")
    let created = response.body.withUnsafeBytes { bytes in
        MHD_create_response_from_buffer(bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
    }
    guard let mhdResponse = created else { return .NO }
    defer { MHD_destroy_response(mhdResponse) }
    for (name, value) in response.headers where !framingHeaders.contains(name.lowercased()) {
        // MHD rejects names or values with CR/LF (header injection); such a header is dropped.
        _ = MHD_add_response_header(mhdResponse, name, value)
    }
    if draining { _ = MHD_add_response_header(mhdResponse, "Connection", "close") }
    return MHD_queue_response(connection, UInt32(response.status), mhdResponse)
}
