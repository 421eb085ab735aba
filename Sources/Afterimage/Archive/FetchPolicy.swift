import Curl
import Foundation

/// Which URLs the workers may download: scheme and host allowlists checked before any request and on
/// every redirect hop, and — unless `fetch.allow_private_networks` — no private, loopback or link-local
/// address, checked after DNS in libcurl's open-socket callback so a public name that resolves to
/// 127.0.0.1 (DNS rebinding) is refused too.
public struct FetchPolicy: Sendable {
    public let allowedHosts: [String]
    public let allowedSchemes: [String]
    public let allowPrivateNetworks: Bool
    public let maxBytes: Int64

    public init(allowedHosts: [String], allowedSchemes: [String], allowPrivateNetworks: Bool, maxBytes: Int64) {
        self.allowedHosts = allowedHosts.map { $0.lowercased() }
        self.allowedSchemes = allowedSchemes.map { $0.lowercased() }
        self.allowPrivateNetworks = allowPrivateNetworks
        self.maxBytes = maxBytes
    }

    public init(_ fetch: Settings.Fetch) {
        self.init(
            allowedHosts: fetch.allowedHosts, allowedSchemes: fetch.allowedSchemes,
            allowPrivateNetworks: fetch.allowPrivateNetworks, maxBytes: fetch.maxBytes)
    }

    /// Nil when allowed, else why not (the reason becomes the asset's failure reason).
    public func refusal(for urlString: String) -> String? {
        guard let url = URL(string: urlString), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty else {
            return "not an absolute URL"
        }
        guard allowedSchemes.contains(scheme) else { return "scheme \(scheme) is not in fetch.allowed_schemes" }
        guard url.user == nil, url.password == nil else { return "URLs with credentials are refused" }
        guard hostAllowed(host) else { return "host \(host) is not in fetch.allowed_hosts" }
        return nil
    }

    /// `*.example.com` matches any subdomain of example.com but not example.com itself; other entries
    /// match exactly. Hosts compare case-insensitively.
    public func hostAllowed(_ host: String) -> Bool { HostPatterns(allowedHosts).matches(host) }

    /// libcurl options enforcing this policy. `extra` lets callers add timeouts and abort hooks.
    public func curlOptions() -> CurlOptions {
        var options = CurlOptions()
        options.allowedProtocols = allowedSchemes
        options.maxBytes = maxBytes
        options.maxRedirects = 5
        options.connectTimeout = .seconds(10)
        options.lowSpeedLimitBytesPerSecond = 1024
        options.lowSpeedTime = .seconds(30)
        let policy = self
        options.redirectPolicy = { target in policy.refusal(for: target) == nil }
        if !allowPrivateNetworks {
            options.addressPolicy = { address in !address.isPrivateOrReserved }
        }
        return options
    }
}

/// A list of host names and `*.domain` wildcards, as `fetch.allowed_hosts` and `replicate.token_hosts`
/// write them. `*.example.com` matches any subdomain of example.com but not example.com itself; other
/// entries match exactly; hosts compare case-insensitively, without IPv6 brackets or a trailing dot.
public struct HostPatterns: Sendable {
    public let patterns: [String]

    public init(_ patterns: [String]) { self.patterns = patterns.map { $0.lowercased() } }

    public func matches(_ host: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]."))
        guard !host.isEmpty else { return false }
        return patterns.contains { pattern in
            if pattern.hasPrefix("*.") {
                let suffix = pattern.dropFirst(1)  // ".example.com"
                return host.hasSuffix(suffix) && host.count > suffix.count
            }
            return host == pattern
        }
    }
}

/// A bearer token and the only hosts it may be sent to (`replicate.api_token` and `replicate.token_hosts`).
public struct SourceCredential: Sendable {
    public let token: String
    public let hosts: HostPatterns

    public init(token: String, hosts: [String]) {
        self.token = token
        self.hosts = HostPatterns(hosts)
    }

    /// The `Authorization` header for a hop to `host`, or nothing when the host is not one of the token's.
    /// Decided per hop (`CurlOptions.destinationHeaders`), so a redirect never carries the token elsewhere.
    public func headers(for host: String) -> [(String, String)] {
        guard !token.isEmpty, hosts.matches(host) else { return [] }
        return [("Authorization", "Bearer \(token)")]
    }
}
