/// The pieces of an http(s) URL that SigV4 needs, split by hand.
///
/// Foundation's `URL` re-encodes or rejects paths that S3 keys legitimately contain (spaces, `//`,
/// unicode, `%` sequences) and normalises differently across platforms; SigV4 must see the path
/// exactly as it will be sent, so the split is done here without interpretation.
struct URLParts: Sendable, Equatable {
    var scheme: String
    /// Host as written, including brackets for an IPv6 literal.
    var host: String
    var port: Int?
    /// Path as written (raw or percent-encoded); "" when the URL has none.
    var path: Substring
    /// Query as written, without `?`; nil when there is none.
    var query: Substring?

    init?(_ url: String) {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        scheme = url[url.startIndex..<schemeEnd.lowerBound].lowercased()
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var authority = rest[rest.startIndex..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        // A port follows the last ':' unless that colon is inside an IPv6 literal's brackets.
        if let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") {
            let portText = authority[authority.index(after: colon)...]
            guard let p = Int(portText), (0...65535).contains(p) else { return nil }
            port = p
            host = String(authority[authority.startIndex..<colon])
        } else {
            port = nil
            host = String(authority)
        }
        guard !host.isEmpty else { return nil }
        var afterAuthority = rest[authorityEnd...]
        if let hash = afterAuthority.firstIndex(of: "#") { afterAuthority = afterAuthority[..<hash] }
        if let q = afterAuthority.firstIndex(of: "?") {
            path = afterAuthority[afterAuthority.startIndex..<q]
            query = afterAuthority[afterAuthority.index(after: q)...]
        } else {
            path = afterAuthority
            query = nil
        }
    }

    /// The Host header value: the port is part of it only when it is not the scheme's default,
    /// as HTTP clients (libcurl included) send it, since the signature must match what is sent.
    var hostHeader: String {
        guard let port else { return host }
        if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) { return host }
        return "\(host):\(port)"
    }

    /// `scheme://host[:port]` as given, for rebuilding a URL with a canonical path and query.
    var origin: String {
        if let port { return "\(scheme)://\(host):\(port)" }
        return "\(scheme)://\(host)"
    }
}
