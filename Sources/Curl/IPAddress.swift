import Glibc

/// An IPv4 or IPv6 address, as libcurl is about to connect to it. The SSRF guard judges these, not
/// host names: a public name may resolve to a private address.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), network order.
    public let bytes: [UInt8]

    public var isIPv4: Bool { bytes.count == 4 }

    /// From 4 or 16 bytes in network order.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted IPv4 ("10.0.0.1") or IPv6 ("::1", "::ffff:127.0.0.1"), with or without brackets.
    /// No zone ids, no shorthand IPv4 ("127.1"): inet_pton's strict forms only.
    public init?(_ string: String) {
        var text = Substring(string)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(text), &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, String(text), &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok: Bool = bytes.withUnsafeBytes { raw in
            inet_ntop(isIPv4 ? AF_INET : AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The IPv4 address carried inside an IPv6 one that reaches it directly (v4-mapped ::ffff:0:0/96,
    /// NAT64 64:ff9b::/96, 6to4 2002::/16), so those are judged by what they actually reach.
    public var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0] == 0x20 && bytes[1] == 0x02 {
            return IPAddress(bytes: Array(bytes[2..<6]))
        }
        return nil
    }

    /// True for every address a fetch of a public URL has no business reaching: loopback, private,
    /// link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, broadcast,
    /// documentation, benchmarking and otherwise reserved ranges, in IPv4 and IPv6. IPv6 forms that
    /// embed an IPv4 address are judged by that address.
    public var isPrivateOrReserved: Bool {
        if let v4 = embeddedIPv4 { return v4.isPrivateOrReserved }
        let table = isIPv4 ? Self.reservedV4 : Self.reservedV6
        return table.contains { matches(prefix: $0.bytes, length: $0.length) }
    }

    /// Whether the first `length` bits equal those of `prefix`.
    func matches(prefix: [UInt8], length: Int) -> Bool {
        guard prefix.count == bytes.count else { return false }
        var bitsLeft = length
        var index = 0
        while bitsLeft > 0 {
            let mask: UInt8 = bitsLeft >= 8 ? 0xff : ~(0xff >> UInt8(bitsLeft))
            if bytes[index] & mask != prefix[index] & mask { return false }
            bitsLeft -= 8
            index += 1
        }
        return true
    }

    private static func cidr(_ text: String) -> (bytes: [UInt8], length: Int) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let length = Int(parts[1]) else {
            preconditionFailure("bad CIDR literal \(text)")
        }
        return (address.bytes, length)
    }

    // IANA IPv4 / IPv6 Special-Purpose Address Registries, plus multicast.
    private static let reservedV4: [(bytes: [UInt8], length: Int)] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    ].map(cidr)

    private static let reservedV6: [(bytes: [UInt8], length: Int)] = [
        "::/96",  // unspecified, loopback and the deprecated IPv4-compatible form
        "64:ff9b:1::/48",  // local-use NAT64
        "100::/64",  // discard-only
        "2001::/23",  // IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  // documentation
        "3fff::/20",  // documentation (2024)
        "5f00::/16",  // SRv6 SIDs
        "fc00::/7",  // unique local
        "fe80::/10",  // link-local
        "fec0::/10",  // deprecated site-local
        "ff00::/8",  // multicast
    ].map(cidr)
}
