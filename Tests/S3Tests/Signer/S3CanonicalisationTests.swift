import Foundation
import S3
import Testing

/// S3's own canonicalisation rules, and the header-signing examples of the S3 documentation
/// ("Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk",
/// examplebucket, 20130524T000000Z, AKIAIOSFODNN7EXAMPLE).
@Suite("S3 canonicalisation")
struct S3CanonicalisationTests {
    let docSigner = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1")
    let docDate = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z
    let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AK", secretAccessKey: "SK"), region: "us-east-1")

    func signature(_ headers: [(String, String)]) -> String? {
        headers.first { $0.0 == "Authorization" }?.1.components(separatedBy: "Signature=").last
    }

    func lines(_ url: String, headers: [(String, String)] = []) -> [Substring] {
        signer.canonicalRequest(method: "GET", url: url, headers: headers, payloadHash: "UNSIGNED-PAYLOAD")
            .split(separator: "\n", omittingEmptySubsequences: false)
    }

    @Test func documentationGetObjectWithRange() {
        #expect(SigV4Signer.amzDate(docDate) == "20130524T000000Z")
        let added = docSigner.sign(
            method: "GET", url: "https://examplebucket.s3.amazonaws.com/test.txt",
            headers: [("Range", "bytes=0-9")], payloadHash: SigV4Signer.emptyPayloadHash, date: docDate)
        #expect(
            added[0].1 == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func documentationPutObjectEncodesDollar() {
        let body = "Welcome to Amazon S3."
        let added = docSigner.sign(
            method: "PUT", url: "https://examplebucket.s3.amazonaws.com/test$file.text",
            headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
            payloadHash: sha256Hex(body.utf8), date: docDate)
        #expect(signature(added) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func documentationValuelessAndSortedQueries() {
        let lifecycle = docSigner.sign(
            method: "GET", url: "https://examplebucket.s3.amazonaws.com/?lifecycle", headers: [],
            payloadHash: SigV4Signer.emptyPayloadHash, date: docDate)
        #expect(signature(lifecycle) == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
        for url in [
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2",
        ] {
            let list = docSigner.sign(method: "GET", url: url, headers: [], payloadHash: SigV4Signer.emptyPayloadHash, date: docDate)
            #expect(signature(list) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        }
    }

    @Test func valuelessParameterIsSignedWithEquals() {
        #expect(lines("http://h/b/k?uploads")[2] == "uploads=")
        #expect(lines("http://h/b/k?uploadId=abc&partNumber=2")[2] == "partNumber=2&uploadId=abc")
        #expect(lines("http://h/b/k?b=2&a=&a=1")[2] == "a=&a=1&b=2")
    }

    @Test func keysAreEncodedOnceWithSlashesKept() {
        let raw = "http://h/b/dir/a b+c=d/ሴ é.png"
        let encoded = "http://h/b/dir/a%20b%2Bc%3Dd/%E1%88%B4%20%C3%A9.png"
        #expect(lines(raw)[1] == "/b/dir/a%20b%2Bc%3Dd/%E1%88%B4%20%C3%A9.png")
        // Already encoded once: not encoded again.
        #expect(lines(encoded)[1] == lines(raw)[1])
        // A literal '%' in a key reaches the signer encoded as %25 and stays that way.
        #expect(lines("http://h/b/100%25.txt")[1] == "/b/100%25.txt")
        #expect(S3URIEncoding.encode("a/b c~._-", encodeSlash: false) == "a/b%20c~._-")
        #expect(S3URIEncoding.encode("a/b", encodeSlash: true) == "a%2Fb")
        #expect(S3URIEncoding.encode("!'()*", encodeSlash: true) == "%21%27%28%29%2A")
    }

    @Test func pathIsNotNormalised() {
        #expect(lines("http://h//example//")[1] == "//example//")
        #expect(lines("http://h/b/a//b")[1] == "/b/a//b")
        #expect(lines("http://h/b/./a/../c")[1] == "/b/./a/../c")
        #expect(lines("http://h")[1] == "/")
    }

    @Test func hostCarriesNonDefaultPortOnly() {
        let withPort = signer.canonicalRequest(method: "GET", url: "http://127.0.0.1:8333/b", headers: [("host", "127.0.0.1:8333")], payloadHash: "x")
        #expect(withPort.contains("\nhost:127.0.0.1:8333\n"))
        // sign() takes the Host from the URL: the same signature as signing an explicit Host header.
        for (url, expectedHost) in [
            ("http://127.0.0.1:8333/b/k", "127.0.0.1:8333"), ("https://h.example:443/b/k", "h.example"),
            ("http://h.example:80/b/k", "h.example"), ("http://[::1]:9000/b/k", "[::1]:9000"),
        ] {
            let implicit = signer.sign(method: "GET", url: url, headers: [], payloadHash: "x", date: docDate)
            let explicit = signer.sign(method: "GET", url: url, headers: [("Host", expectedHost)], payloadHash: "x", date: docDate)
            #expect(implicit[0].1 == explicit[0].1, "\(url)")
        }
    }

    @Test func headerValuesTrimmedCollapsedAndJoined() {
        let creq = signer.canonicalRequest(
            method: "PUT", url: "http://h/b/k",
            headers: [("X-Amz-Meta-B", "  two \t  words  "), ("host", "h"), ("X-Amz-Meta-A", "1"), ("x-amz-meta-a", "2")],
            payloadHash: "p")
        #expect(creq == "PUT\n/b/k\n\nhost:h\nx-amz-meta-a:1,2\nx-amz-meta-b:two words\n\nhost;x-amz-meta-a;x-amz-meta-b\np")
    }

    @Test func credentialsDescriptionRedactsSecrets() {
        let c = S3Credentials(accessKeyID: "AKID", secretAccessKey: "very-secret", sessionToken: "tok-secret")
        #expect(!c.description.contains("very-secret"))
        #expect(!c.description.contains("tok-secret"))
        #expect(c.description.contains("AKID"))
    }

    @Test func amzDateRoundTrips() throws {
        for text in ["19700101T000000Z", "20000229T235959Z", "20130524T000000Z", "21000301T120000Z"] {
            let date = try #require(SigV4Signer.parseAMZDate(text))
            #expect(SigV4Signer.amzDate(date) == text)
        }
        #expect(SigV4Signer.parseAMZDate("2013-05-24") == nil)
    }
}
