import Curl
import Testing

@testable import S3

@Suite("S3 error and XML parsing")
struct S3ErrorParsingTests {
    @Test func parsesCodeAndMessage() {
        let body = Array(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match &amp; so on</Message>\
            <StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign></Error>
            """.utf8)
        let e = S3Error.from(status: 403, body: body, operation: "PUT k")
        #expect(e.code == .signatureDoesNotMatch)
        #expect(e.status == 403)
        #expect(e.s3Code == "SignatureDoesNotMatch")
        #expect(e.message == "PUT k: HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match & so on")
        #expect(!e.description.contains("StringToSign") && !e.description.contains("secret-ish"))
    }

    @Test func bodylessStatusesMapByStatus() {
        #expect(S3Error.from(status: 404, body: [], operation: "HEAD k").code == .noSuchKey)
        #expect(S3Error.from(status: 404, body: [], operation: "HEAD b", notFound: .noSuchBucket).code == .noSuchBucket)
        #expect(S3Error.from(status: 403, body: [], operation: "HEAD k").code == .accessDenied)
        #expect(S3Error.from(status: 412, body: [], operation: "PUT k").code == .preconditionFailed)
        let e503 = S3Error.from(status: 503, body: Array("<Error><Code>SlowDown</Code></Error>".utf8), operation: "PUT k")
        #expect(e503.code == .http(503))
        #expect(e503.isTransient)
        #expect(!S3Error.from(status: 403, body: [], operation: "x").isTransient)
    }

    @Test func xmlEntitiesAndEscaping() {
        #expect(MiniXML.first("UploadId", in: "<R xmlns=\"x\"><Bucket>b</Bucket><UploadId>a&amp;b&#x2F;c&#61;</UploadId></R>") == "a&b/c=")
        #expect(MiniXML.first("ETag", in: "<R><ETag>&quot;abc-2&quot;</ETag></R>") == "\"abc-2\"")
        #expect(MiniXML.first("Missing", in: "<R/>") == nil)
        #expect(MiniXML.escape("\"a\"<&>") == "&quot;a&quot;&lt;&amp;&gt;")
        #expect(MiniXML.unescape("a & b &bogus; &#99999999;") == "a & b &bogus; &#99999999;")
    }
}

@Suite("Object info from headers")
struct ObjectInfoTests {
    @Test func valuesAreTrimmedAndMetadataUnprefixed() {
        let headers = HTTPHeaders([
            ("Content-Length", " 42\r\n"), ("ETag", "\"abc\"\r\n"), ("Content-Type", "image/png\r\n"),
            ("X-Amz-Meta-Sha256", "deadbeef\r\n"), ("Last-Modified", "Sat, 21 Nov 2026 13:00:00 GMT"), ("Server", "x"),
        ])
        let info = ObjectInfo(headers: headers, fallbackSize: 7)
        #expect(
            info
                == ObjectInfo(
                    size: 42, etag: "\"abc\"", contentType: "image/png", metadata: ["sha256": "deadbeef"],
                    lastModified: "Sat, 21 Nov 2026 13:00:00 GMT"))
        #expect(ObjectInfo(headers: HTTPHeaders([]), fallbackSize: 7).size == 7)
    }
}
