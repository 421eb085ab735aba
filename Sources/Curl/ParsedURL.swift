import CCurl

/// A URL split the way libcurl itself will split it (curl_url), so scheme and origin checks agree
/// with what libcurl connects to, and so errors can name a URL without its secrets.
struct ParsedURL {
    let scheme: String
    let host: String
    let port: String
    let path: String
    let query: String
    let userInfo: String

    init(_ url: String) throws(CurlError) {
        guard let handle = curl_url() else { throw CurlError(.transport(Int32(CURLE_OUT_OF_MEMORY.rawValue)), "curl_url failed") }
        defer { curl_url_cleanup(handle) }
        let setResult = curl_url_set(handle, CURLUPART_URL, url, UInt32(CURLU_NON_SUPPORT_SCHEME))
        guard setResult == CURLUE_OK else {
            // Never echo the URL itself: it may carry a presigned signature.
            throw CurlError(.invalidURL, "unparseable URL: \(String(cString: curl_url_strerror(setResult)))")
        }
        func part(_ what: CURLUPart, _ flags: UInt32 = 0) -> String {
            var value: UnsafeMutablePointer<CChar>? = nil
            guard curl_url_get(handle, what, &value, flags) == CURLUE_OK, let value else { return "" }
            defer { curl_free(value) }
            return String(cString: value)
        }
        scheme = part(CURLUPART_SCHEME).lowercased()
        host = part(CURLUPART_HOST).lowercased()
        port = part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT))
        path = part(CURLUPART_PATH)
        query = part(CURLUPART_QUERY)
        let user = part(CURLUPART_USER)
        let password = part(CURLUPART_PASSWORD)
        userInfo = user.isEmpty && password.isEmpty ? "" : user + ":" + password
    }

    /// scheme://host:port: two URLs with the same origin may share credentials.
    var origin: String { "\(scheme)://\(host):\(port)" }

    /// The URL without user info, query or fragment: safe for logs and error messages.
    var redacted: String { "\(scheme)://\(host)\(port.isEmpty ? "" : ":" + port)\(path)" + (query.isEmpty ? "" : "?…") }

    /// Removes this URL's secrets from a libcurl message that might quote them.
    func scrub(_ text: String) -> String {
        var result = text
        for secret in [query, userInfo] where secret.count >= 4 {
            result = result.replacing(secret, with: "…")
        }
        return result
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive timeout never becomes "no timeout" (0).
    var millisecondsRoundedUp: Int {
        let (seconds, attoseconds) = components
        let millis = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        let remainder = attoseconds % 1_000_000_000_000_000
        return Int(millis) + (remainder > 0 ? 1 : 0)
    }
}
