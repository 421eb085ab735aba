import Foundation
import S3
import Testing

/// The AWS Signature Version 4 test suite (2015 edition: service "service", region us-east-1,
/// 20150830T123600Z, key AKIDEXAMPLE), limited to the cases whose rules S3 shares.
///
/// Skipped, on purpose:
/// - normalize-path cases get-relative, get-relative-relative, get-slash, get-slash-dot-slash,
///   get-slash-pointless-dot, get-slashes: they remove dot segments and collapse `//`, which S3 does
///   not do (an S3 key may contain `./`, `../` and `//`). `S3CanonicalisationTests` asserts the S3
///   behaviour for the same paths instead. (get-space, filed under normalize-path, only encodes a
///   space and is kept.)
/// - post-sts-header-after: adds the session token after signing; we always sign
///   `x-amz-security-token`, which post-sts-header-before covers.
/// - get-header-value-multiline: obs-fold header continuation lines, which HTTP/1.1 deprecates
///   and which our signer's (name, value) header API cannot express.
@Suite("AWS SigV4 test suite")
struct AWSTestSuiteTests {
    static let cases = [
        "get-vanilla", "get-vanilla-query", "get-vanilla-empty-query-key",
        "get-vanilla-query-order-key", "get-vanilla-query-order-key-case", "get-vanilla-query-order-value",
        "get-vanilla-query-unreserved", "get-vanilla-utf8-query", "get-utf8", "get-unreserved", "get-space",
        "get-header-key-duplicate", "get-header-value-order", "get-header-value-trim",
        "post-header-key-case", "post-header-key-sort", "post-header-value-case",
        "post-vanilla", "post-vanilla-query", "post-vanilla-empty-query-value",
        "post-x-www-form-urlencoded", "post-x-www-form-urlencoded-parameters", "post-sts-header-before",
    ]

    static let sessionToken =
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

    let signer = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    let date = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z

    @Test func everyCopiedCaseIsRun() throws {
        let dir = try VectorFiles.directory().appendingPathComponent("aws4_testsuite")
        let present = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(present == Self.cases.sorted())
        #expect(SigV4Signer.amzDate(date) == "20150830T123600Z")
    }

    @Test(arguments: cases)
    func suiteCase(_ name: String) throws {
        let base = "aws4_testsuite/\(name)/\(name)"
        let request = try SuiteRequest(parsing: VectorFiles.text(base + ".req"))
        let url = "https://\(try #require(request.host))\(request.uri)"
        let payloadHash = sha256Hex(request.body.utf8)

        let creq = signer.canonicalRequest(method: request.method, url: url, headers: request.headers, payloadHash: payloadHash)
        let sts = signer.stringToSign(canonicalRequest: creq, date: date)
        let authz = signer.authorization(canonicalRequest: creq, signedHeaders: signer.signedHeaders(request.headers), date: date)

        // get-utf8's .creq and .sts are absent from the copy we could obtain; its .authz still
        // checks both, since the signature is an HMAC of the string to sign, which hashes the creq.
        if try VectorFiles.exists(base + ".creq") {
            #expect(creq == (try VectorFiles.text(base + ".creq")))
        }
        if try VectorFiles.exists(base + ".sts") {
            #expect(sts == (try VectorFiles.text(base + ".sts")))
        }
        #expect(authz == (try VectorFiles.text(base + ".authz")))

        // The signed request is the request with our Authorization header added.
        let signedRequest = try VectorFiles.text(base + ".sreq")
        #expect(signedRequest.contains("\nAuthorization: \(authz)"))
    }

    /// `sign` (the API the client uses) must agree with the step functions and, given a session
    /// token, produce the post-sts-header-before signature once x-amz-content-sha256 is accounted for.
    @Test func signAddsDateHashAndTokenAndSignsThem() throws {
        let withToken = SigV4Signer(
            credentials: S3Credentials(
                accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                sessionToken: Self.sessionToken),
            region: "us-east-1", service: "service")
        let added = withToken.sign(
            method: "POST", url: "https://example.amazonaws.com/", headers: [],
            payloadHash: SigV4Signer.emptyPayloadHash, date: date)
        let names = added.map { $0.0.lowercased() }
        #expect(names == ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"])
        let all = [("Host", "example.amazonaws.com")] + added.filter { $0.0 != "Authorization" }
        let creq = withToken.canonicalRequest(
            method: "POST", url: "https://example.amazonaws.com/", headers: all,
            payloadHash: SigV4Signer.emptyPayloadHash)
        let expected = withToken.authorization(canonicalRequest: creq, signedHeaders: withToken.signedHeaders(all), date: date)
        #expect(added[0].1 == expected)
        #expect(expected.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"))
    }
}
