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

    /// Parsed over the UTF-8 bytes: every delimiter is ASCII, so byte positions are valid `String`
    /// indices, and presigning (one parse per lookup answer) avoids Foundation's and `Character`'s costs.
    init?(_ url: String) {
        let bytes = url.utf8
        func first(_ byte: UInt8, in range: Range<String.Index>) -> String.Index? {
            bytes[range].firstIndex(of: byte)
        }
        // "://"
        var schemeEnd: String.Index?
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == UInt8(ascii: ":") {
                let slash1 = bytes.index(after: i)
                if slash1 < bytes.endIndex, bytes[slash1] == UInt8(ascii: "/") {
                    let slash2 = bytes.index(after: slash1)
                    if slash2 < bytes.endIndex, bytes[slash2] == UInt8(ascii: "/") {
                        schemeEnd = i
                        break
                    }
                }
            }
            i = bytes.index(after: i)
        }
        guard let schemeEnd else { return nil }
        scheme = url[url.startIndex..<schemeEnd].lowercased()
        let restStart = bytes.index(schemeEnd, offsetBy: 3)
        let authorityEnd =
            bytes[restStart...].firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") })
            ?? bytes.endIndex
        var authorityStart = restStart
        if let at = bytes[restStart..<authorityEnd].lastIndex(of: UInt8(ascii: "@")) { authorityStart = bytes.index(after: at) }
        // A port follows the last ':' unless that colon is inside an IPv6 literal's brackets.
        if let colon = bytes[authorityStart..<authorityEnd].lastIndex(of: UInt8(ascii: ":")),
            first(UInt8(ascii: "]"), in: colon..<authorityEnd) == nil
        {
            guard let p = Int(url[bytes.index(after: colon)..<authorityEnd]), (0...65535).contains(p) else { return nil }
            port = p
            host = String(url[authorityStart..<colon])
        } else {
            port = nil
            host = String(url[authorityStart..<authorityEnd])
        }
        guard !host.isEmpty else { return nil }
        let end = first(UInt8(ascii: "#"), in: authorityEnd..<bytes.endIndex) ?? bytes.endIndex
        if let q = first(UInt8(ascii: "?"), in: authorityEnd..<end) {
            path = url[authorityEnd..<q]
            query = url[bytes.index(after: q)..<end]
        } else {
            path = url[authorityEnd..<end]
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
