import CLibPQ
import Foundation

/// The keyword/value list handed to `PQconnectdbParams`, built so the caller's URI is kept
/// intact (`expand_dbname=1`) while the session settings PQ's decoders rely on always win.
///
/// libpq processes keywords in order and the last value of a keyword is kept, so settings PQ depends
/// on (UTC, ISO dates, hex bytea, UTF-8, the connect timeout and `SessionLimits` the caller passed)
/// come after `dbname` and win over the URI.
struct ConnectionParameters {
    /// Session settings the text decoders assume; appended after any `options` from the URI so
    /// they take precedence (`-c` settings apply left to right).
    static let sessionOptions = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c bytea_output=hex"

    var keywords: [String] = []
    var values: [String] = []

    init(url: String, connectTimeoutSeconds: Int, limits: SessionLimits = SessionLimits()) {
        // Used only when the URI names no application_name of its own.
        append("fallback_application_name", "afterimage")
        append("dbname", url)
        // libpq treats 1 as 2 and 0 as "wait forever"; never wait forever.
        append("connect_timeout", String(max(2, connectTimeoutSeconds)))
        append("client_encoding", "UTF8")
        // Dead peers (a server that vanished without closing TCP) are noticed within about a minute
        // instead of the kernel's two hours, so a blocked query fails instead of hanging forever.
        append("keepalives", "1")
        append("keepalives_idle", String(max(1, limits.keepalivesIdleSeconds)))
        append("keepalives_interval", String(max(1, limits.keepalivesIntervalSeconds)))
        append("keepalives_count", String(max(1, limits.keepalivesCount)))
        if limits.tcpUserTimeoutMilliseconds > 0 {
            append("tcp_user_timeout", String(limits.tcpUserTimeoutMilliseconds))
        }
        let ours = [Self.sessionOptions, limits.serverOptions].filter { !$0.isEmpty }.joined(separator: " ")
        let uriOptions = Self.parsedValue("options", in: url) ?? ""
        append("options", uriOptions.isEmpty ? ours : uriOptions + " " + ours)
    }

    private mutating func append(_ keyword: String, _ value: String) {
        keywords.append(keyword)
        values.append(value)
    }

    /// Calls `body` with NULL-terminated C arrays of the keywords and values.
    func withCArrays<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>, UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let cKeywords = keywords.map { UnsafePointer(strdup($0)) } + [nil]
        let cValues = values.map { UnsafePointer(strdup($0)) } + [nil]
        defer {
            for pointer in cKeywords + cValues { free(UnsafeMutablePointer(mutating: pointer)) }
        }
        return cKeywords.withUnsafeBufferPointer { k in
            cValues.withUnsafeBufferPointer { v in body(k.baseAddress!, v.baseAddress!) }
        }
    }

    /// One keyword's value as libpq parses the URI or key=value string; nil when absent or the
    /// string does not parse (libpq's own connect reports that, redacted).
    static func parsedValue(_ keyword: String, in conninfo: String) -> String? {
        guard let options = PQconninfoParse(conninfo, nil) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let name = option.pointee.keyword {
            if String(cString: name) == keyword {
                return option.pointee.val.map { String(cString: $0) }
            }
            option += 1
        }
        return nil
    }
}

/// Removes a connection string's secrets from libpq's messages before they become `PQError`s.
///
/// libpq's messages do not normally quote passwords, but some parse errors quote pieces of the
/// URI; this is the belt to that pair of braces. It strips the whole URI, the password libpq
/// parses from it, and the password as it appears in the URI's userinfo (raw and percent-decoded).
enum SecretRedaction {
    static func redact(_ message: String, conninfo: String) -> String {
        var secrets: Set<String> = [conninfo]
        if let password = ConnectionParameters.parsedValue("password", in: conninfo) { secrets.insert(password) }
        for password in userinfoPasswords(conninfo) {
            secrets.insert(password)
            if let decoded = password.removingPercentEncoding { secrets.insert(decoded) }
        }
        if let range = conninfo.range(of: "password=") {
            let rest = conninfo[range.upperBound...]
            secrets.insert(String(rest.prefix { $0 != " " && $0 != "&" }))
        }
        var text = message
        for secret in secrets.filter({ !$0.isEmpty }).sorted(by: { $0.count > $1.count }) {
            text = text.replacingOccurrences(of: secret, with: "***")
        }
        return text
    }

    /// Candidate passwords in `scheme://user:password@host...`, bounded both by the first "/" of
    /// the path and by the last "@", since a malformed URI may contain either unescaped.
    private static func userinfoPasswords(_ uri: String) -> [String] {
        guard let schemeEnd = uri.range(of: "://") else { return [] }
        let rest = uri[schemeEnd.upperBound...]
        var candidates: [String] = []
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        for userinfo in [authority.lastIndex(of: "@").map { authority[..<$0] }, rest.lastIndex(of: "@").map { rest[..<$0] }] {
            guard let userinfo, let colon = userinfo.firstIndex(of: ":") else { continue }
            candidates.append(String(userinfo[userinfo.index(after: colon)...]))
        }
        return candidates
    }
}
