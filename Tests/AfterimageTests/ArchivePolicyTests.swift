import Testing

@testable import Afterimage

@Suite("Fetch policy and storage layout")
struct ArchivePolicyTests {
    let policy = FetchPolicy(
        allowedHosts: ["replicate.delivery", "*.replicate.delivery", "API.example.com"],
        allowedSchemes: ["https"], allowPrivateNetworks: false, maxBytes: 10)

    @Test func hostAllowlist() {
        #expect(policy.refusal(for: "https://replicate.delivery/a.png") == nil)
        #expect(policy.refusal(for: "https://pbxt.replicate.delivery/a.png") == nil)
        #expect(policy.refusal(for: "https://api.example.com/x") == nil)
        #expect(policy.refusal(for: "https://evilreplicate.delivery/a.png") != nil)
        #expect(policy.refusal(for: "https://replicate.delivery.evil.com/a.png") != nil)
        #expect(policy.refusal(for: "http://replicate.delivery/a.png")?.contains("scheme") == true)
        #expect(policy.refusal(for: "https://user:pw@replicate.delivery/a.png") != nil)
        #expect(policy.refusal(for: "/relative") != nil)
        #expect(policy.refusal(for: "https://169.254.169.254/latest/meta-data") != nil)
    }

    @Test func curlOptionsCarryTheGuards() {
        let options = policy.curlOptions()
        #expect(options.allowedProtocols == ["https"])
        #expect(options.maxBytes == 10)
        #expect(options.addressPolicy != nil)
        #expect(options.redirectPolicy?("https://other.example/x") == false)
        #expect(options.redirectPolicy?("https://a.replicate.delivery/x") == true)
        let open = FetchPolicy(allowedHosts: ["127.0.0.1"], allowedSchemes: ["http"], allowPrivateNetworks: true, maxBytes: 1)
        #expect(open.curlOptions().addressPolicy == nil)
    }

    @Test func keysAreStableAndCarryTheExtension() {
        let layout = StorageLayout(prefix: "archive/")
        #expect(
            layout.key(provider: "replicate", predictionID: "abc", index: 2, contentType: "image/png", sourceURL: nil)
                == "archive/replicate/abc/2.png")
        #expect(
            layout.key(provider: "replicate", predictionID: "abc", index: 0, contentType: "image/jpeg; charset=binary", sourceURL: nil)
                == "archive/replicate/abc/0.jpg")
        #expect(
            layout.key(
                provider: "replicate", predictionID: "abc", index: 1, contentType: "application/octet-stream",
                sourceURL: "https://replicate.delivery/x/out-1.webp") == "archive/replicate/abc/1.webp")
        #expect(
            layout.key(
                provider: "replicate", predictionID: "abc", index: 1, contentType: nil,
                sourceURL: "https://replicate.delivery/x/noext") == "archive/replicate/abc/1")
        #expect(StorageLayout.fileExtension(contentType: nil, sourceURL: "https://x/a.reallylongext") == "")
    }
}
