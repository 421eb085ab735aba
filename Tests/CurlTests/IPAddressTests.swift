import Curl
import Testing

@Suite("IPAddress")
struct IPAddressTests {
    @Test(
        "classification of private, reserved and public addresses",
        arguments: [
            ("127.0.0.1", true), ("127.255.255.254", true), ("0.0.0.0", true), ("0.1.2.3", true),
            ("10.1.2.3", true), ("100.64.0.1", true), ("100.127.255.255", true), ("100.128.0.1", false),
            ("169.254.169.254", true), ("172.16.0.1", true), ("172.31.255.255", true), ("172.32.0.1", false),
            ("192.0.0.8", true), ("192.0.2.1", true), ("192.168.1.1", true), ("198.18.0.1", true),
            ("198.19.255.255", true), ("198.20.0.1", false), ("224.0.0.1", true), ("239.255.255.250", true),
            ("240.0.0.1", true), ("255.255.255.255", true), ("8.8.8.8", false), ("1.1.1.1", false),
            ("93.184.216.34", false), ("11.0.0.1", false), ("172.15.255.255", false),
            ("::", true), ("::1", true), ("fc00::1", true), ("fd12:3456::1", true), ("fe80::1", true),
            ("febf::1", true), ("ff02::1", true), ("2001:db8::1", true), ("2001::1", true),
            ("2606:4700:4700::1111", false), ("2a00:1450:4001::200e", false),
            ("::ffff:127.0.0.1", true), ("::ffff:10.0.0.1", true), ("::ffff:8.8.8.8", false),
            ("::ffff:169.254.169.254", true), ("64:ff9b::10.0.0.1", true), ("64:ff9b::8.8.8.8", false),
            ("2002:7f00:1::", true), ("2002:808:808::", false), ("[::1]", true),
        ])
    func classification(address: String, isPrivate: Bool) throws {
        let parsed = try #require(IPAddress(address))
        #expect(parsed.isPrivateOrReserved == isPrivate, "\(address)")
    }

    @Test("parsing rejects what is not an address", arguments: ["", "localhost", "127.1", "1.2.3.4.5", "::g", "256.0.0.1", "1.2.3.4/8"])
    func rejects(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func descriptionRoundTrips() throws {
        #expect(try #require(IPAddress("10.0.0.1")).description == "10.0.0.1")
        #expect(try #require(IPAddress("2001:DB8:0:0::1")).description == "2001:db8::1")
        #expect(try #require(IPAddress("::ffff:127.0.0.1")).embeddedIPv4 == IPAddress("127.0.0.1"))
        #expect(try #require(IPAddress("10.0.0.1")).isIPv4)
    }
}
