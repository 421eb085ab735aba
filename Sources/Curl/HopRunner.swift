import CCurl

/// The outcome of one request without redirect handling.
struct HopResult {
    let status: Int
    let headers: [(String, String)]
    let body: [UInt8]
    let bodyTruncated: Bool
    let bytesReceived: Int64
    let effectiveURL: String
    let redirectURL: String?
}

/// Configures the easy handle for one request, runs it, and turns libcurl's result into a `HopResult`
/// or a `CurlError`.
struct HopRunner {
    let handle: UnsafeMutableRawPointer
    let request: CurlRequest
    let url: ParsedURL
    let options: CurlOptions
    let deadline: ContinuousClock.Instant?
    let destination: BodyDestination
    let successLimit: Int64?
    let otherLimit: Int

    private var label: String { "\(request.method) \(url.redacted)" }

    func run() throws(CurlError) -> HopResult {
        try validate()
        let upload = try makeUpload()
        let isHead = request.method == "HEAD"
        let transfer = Transfer(
            destination: destination, isHead: isHead, successLimit: successLimit,
            otherLimit: otherLimit, options: options, upload: upload)
        let context = Unmanaged.passUnretained(transfer).toOpaque()

        // Reset forgets every option of the previous request but keeps its live connections.
        curl_easy_reset(handle)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        // Runs first: the handle outlives `transfer`, so it must not keep pointers to it (error buffer,
        // callback data) once this function returns. Reset keeps live connections.
        defer { curl_easy_reset(handle) }
        let set = EasyOptions(handle: handle)

        try set.set(CURLOPT_URL, request.url)
        try set.set(CURLOPT_NOSIGNAL, 1)  // no SIGALRM for DNS timeouts: we are threaded
        try set.set(CURLOPT_FOLLOWLOCATION, 0)  // redirects are ours, checked one by one
        try set.set(CURLOPT_PROXY, "")  // ignore *_proxy variables: the address guard must see the real peer
        if options.pathAsIs { try set.set(CURLOPT_PATH_AS_IS, 1) }  // the path exactly as signed
        let protocols = options.allowedProtocols.map { $0.lowercased() }.joined(separator: ",")
        try set.set(CURLOPT_PROTOCOLS_STR, protocols)
        try set.set(CURLOPT_REDIR_PROTOCOLS_STR, protocols)
        try set.set(CURLOPT_CONNECTTIMEOUT_MS, max(1, options.connectTimeout.millisecondsRoundedUp))
        if let deadline {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw CurlError(.timeout, "\(label): total timeout reached") }
            try set.set(CURLOPT_TIMEOUT_MS, max(1, remaining.millisecondsRoundedUp))
        }
        if options.lowSpeedLimitBytesPerSecond > 0 {
            try set.set(CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimitBytesPerSecond)
            try set.set(CURLOPT_LOW_SPEED_TIME, max(1, (options.lowSpeedTime.millisecondsRoundedUp + 999) / 1000))
        }
        try set.set(CURLOPT_TCP_KEEPALIVE, 1)
        try set.set(CURLOPT_ERRORBUFFER, pointer: UnsafeMutableRawPointer(transfer.errorBuffer))
        try set.set(CURLOPT_WRITEFUNCTION, data: curlWriteCallback)
        try set.set(CURLOPT_WRITEDATA, pointer: context)
        try set.set(CURLOPT_HEADERFUNCTION, data: curlHeaderCallback)
        try set.set(CURLOPT_HEADERDATA, pointer: context)
        if options.shouldAbort != nil {
            try set.set(CURLOPT_NOPROGRESS, 0)
            try set.set(CURLOPT_XFERINFOFUNCTION, xferinfo: curlProgressCallback)
            try set.set(CURLOPT_XFERINFODATA, pointer: context)
        }
        if options.addressPolicy != nil {
            try set.set(CURLOPT_OPENSOCKETFUNCTION, opensocket: curlOpenSocketCallback)
            try set.set(CURLOPT_OPENSOCKETDATA, pointer: context)
        }

        var extraHeaders: [String] = []
        if isHead {
            try set.set(CURLOPT_NOBODY, 1)
        } else if let upload {
            // UPLOAD sends the body from the read callback with a Content-Length (INFILESIZE_LARGE);
            // CUSTOMREQUEST renames the PUT for POST and friends.
            try set.set(CURLOPT_UPLOAD, 1)
            try set.set(CURLOPT_INFILESIZE_LARGE, large: upload.length)
            try set.set(CURLOPT_READFUNCTION, data: curlReadCallback)
            try set.set(CURLOPT_READDATA, pointer: context)
            try set.set(CURLOPT_SEEKFUNCTION, seek: curlSeekCallback)
            try set.set(CURLOPT_SEEKDATA, pointer: context)
            if request.method != "PUT" { try set.set(CURLOPT_CUSTOMREQUEST, request.method) }
            // libcurl otherwise waits up to a second for a 100 Continue before sending bodies over 1 MiB.
            extraHeaders.append("Expect:")
        } else {
            try set.set(CURLOPT_HTTPGET, 1)
            if request.method != "GET" { try set.set(CURLOPT_CUSTOMREQUEST, request.method) }
        }

        for (name, value) in request.headers {
            // "Name:" would remove the header in libcurl; "Name;" sends it with an empty value.
            headerList = curl_slist_append(headerList, value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        for line in extraHeaders where !request.headers.contains(where: { line.hasPrefix($0.0 + ":") }) {
            headerList = curl_slist_append(headerList, line)
        }
        if headerList != nil { try set.set(CURLOPT_HTTPHEADER, list: headerList) }

        let code = withExtendedLifetime(transfer) { curl_easy_perform(handle) }
        let truncatedOnPurpose = code == CURLE_WRITE_ERROR && transfer.bodyTruncated && transfer.failure == nil
        guard code == CURLE_OK || truncatedOnPurpose else { throw error(for: code, transfer) }
        let status = set.long(CURLINFO_RESPONSE_CODE)
        return HopResult(
            status: status != 0 ? status : transfer.status,
            headers: transfer.headers,
            body: transfer.body,
            bodyTruncated: transfer.bodyTruncated,
            bytesReceived: transfer.bytesReceived,
            effectiveURL: set.string(CURLINFO_EFFECTIVE_URL) ?? request.url,
            redirectURL: set.string(CURLINFO_REDIRECT_URL)
        )
    }

    /// Method and header syntax, so a value from outside cannot inject a header line or a request.
    private func validate() throws(CurlError) {
        func isToken(_ text: String) -> Bool {
            !text.isEmpty
                && text.utf8.allSatisfy { byte in
                    (0x21...0x7e).contains(byte) && !"\"(),/:;<=>?@[\\]{}".utf8.contains(byte)
                }
        }
        guard isToken(request.method) else { throw CurlError(.invalidRequest, "invalid method") }
        for (name, value) in request.headers {
            guard isToken(name) else { throw CurlError(.invalidRequest, "\(label): invalid header name") }
            guard !value.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a || $0 == 0 }) else {
                throw CurlError(.invalidRequest, "\(label): header \(name) has a line break in its value")
            }
        }
        if request.method == "HEAD", !request.body.isEmpty {
            throw CurlError(.invalidRequest, "\(label): a HEAD request cannot have a body")
        }
    }

    private func makeUpload() throws(CurlError) -> UploadSource? {
        switch request.body {
        case .none:
            // PUT and POST always send a (possibly empty) body with a Content-Length: 0.
            return request.method == "PUT" || request.method == "POST" ? UploadSource(bytes: []) : nil
        case .bytes(let bytes):
            return UploadSource(bytes: bytes)
        case .file(let path, let offset, let length):
            return try UploadSource(path: path, offset: offset, length: length)
        }
    }

    private func error(for code: CURLcode, _ transfer: Transfer) -> CurlError {
        let curlCode = Int32(code.rawValue)
        if let failure = transfer.failure {
            return CurlError(failure.code, "\(label): \(failure.message)", curlCode: curlCode, sinkError: transfer.sinkError)
        }
        var detail = url.scrub(transfer.errorText)
        if detail.isEmpty { detail = String(cString: curl_easy_strerror(code)) }
        if !transfer.blockedAddresses.isEmpty && code != CURLE_OK
            && [CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT].contains(code)
        {
            let list = Set(transfer.blockedAddresses.map(\.description)).sorted().joined(separator: ", ")
            return CurlError(.blockedAddress, "\(label): address policy refused \(list)", curlCode: curlCode)
        }
        let kind: CurlError.Code
        switch code {
        case CURLE_OPERATION_TIMEDOUT: kind = .timeout
        case CURLE_COULDNT_CONNECT: kind = .connectFailed
        case CURLE_COULDNT_RESOLVE_HOST: kind = .resolveFailed
        case CURLE_UNSUPPORTED_PROTOCOL: kind = .protocolNotAllowed
        case CURLE_URL_MALFORMAT: kind = .invalidURL
        case CURLE_PARTIAL_FILE: kind = .incompleteBody
        case CURLE_ABORTED_BY_CALLBACK: kind = .aborted
        case CURLE_READ_ERROR: kind = .bodySourceFailed
        default: kind = .transport(curlCode)
        }
        return CurlError(kind, "\(label): \(detail)", curlCode: curlCode)
    }
}
