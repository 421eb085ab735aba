import Foundation
import S3
import Testing

@Suite("S3 endpoint URLs")
struct S3EndpointTests {
    @Test func pathStyleKeepsPortAndEncodesKeyOnce() throws {
        let e = try S3Endpoint(endpoint: "http://127.0.0.1:8333/", region: "us-east-1", bucket: "testbucket")
        #expect(e.endpoint == "http://127.0.0.1:8333")
        #expect(e.bucketURL == "http://127.0.0.1:8333/testbucket")
        #expect(e.objectURL(key: "replicate/p1/0.png") == "http://127.0.0.1:8333/testbucket/replicate/p1/0.png")
        #expect(e.objectURL(key: "a b/ሴ+=%.png") == "http://127.0.0.1:8333/testbucket/a%20b/%E1%88%B4%2B%3D%25.png")
        #expect(e.objectURL(key: "a//b") == "http://127.0.0.1:8333/testbucket/a//b")
    }

    @Test func virtualHostedPutsBucketInHost() throws {
        let e = try S3Endpoint(
            endpoint: "https://s3.us-east-1.amazonaws.com", region: "us-east-1", bucket: "my-bucket",
            pathStyle: false, prefix: "archive/")
        #expect(e.bucketURL == "https://my-bucket.s3.us-east-1.amazonaws.com/")
        #expect(e.objectURL(key: "archive/x y.png") == "https://my-bucket.s3.us-east-1.amazonaws.com/archive/x%20y.png")
        #expect(e.prefix == "archive/")
        let withPort = try S3Endpoint(endpoint: "http://localhost:9000", region: "auto", bucket: "b12", pathStyle: false)
        #expect(withPort.objectURL(key: "k") == "http://b12.localhost:9000/k")
    }

    @Test func rejectsUnusableConfiguration() {
        func code(_ body: () throws(S3Error) -> S3Endpoint) -> S3Error.Code? {
            do {
                _ = try body()
                return nil
            } catch { return error.code }
        }
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "ftp://h", region: "us-east-1", bucket: "b") } == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "127.0.0.1:8333", region: "us-east-1", bucket: "b") } == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "http://h/base", region: "us-east-1", bucket: "b") } == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "http://h", region: "", bucket: "b") } == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "http://h", region: "us-east-1", bucket: "") } == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "http://h", region: "us-east-1", bucket: "a/b") } == .invalidConfiguration)
        #expect(
            code { () throws(S3Error) in try S3Endpoint(endpoint: "https://h", region: "us-east-1", bucket: "Upper_Case", pathStyle: false) }
                == .invalidConfiguration)
        #expect(
            code { () throws(S3Error) in try S3Endpoint(endpoint: "https://h", region: "us-east-1", bucket: "dotted.bucket", pathStyle: false) }
                == .invalidConfiguration)
        #expect(code { () throws(S3Error) in try S3Endpoint(endpoint: "https://h", region: "us-east-1", bucket: "dotted.bucket") } == nil)
    }

    @Test func errorMessagesDoNotEchoUserInfo() {
        do {
            _ = try S3Endpoint(endpoint: "http://user:hunter2@h/x", region: "us-east-1", bucket: "b")
            Issue.record("accepted an endpoint with user info")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }
}

/// The client presigns from parts its endpoint computed once; the result must be exactly what signing the
/// object URL gives, for every key shape and both URL styles.
@Suite("S3 presign from precomputed endpoint parts")
struct PrecomputedPresignTests {
    static let keys = ["plain/key.png", "a b/ሴ+c=d.png", "100%/x~y", "double//slash/", "query?and#hash", "ünïcödé/日本.webp", "k"]

    @Test(arguments: [
        ("http://127.0.0.1:8333", true), ("https://s3.us-east-1.amazonaws.com", false),
        ("https://s3.example.com:9443", false), ("http://[::1]:9000", true), ("https://minio.local", true),
    ])
    func sameURLAsSigningTheObjectURL(endpoint: String, pathStyle: Bool) throws {
        let s3Endpoint = try S3Endpoint(endpoint: endpoint, region: "eu-west-3", bucket: "bucket-1", pathStyle: pathStyle)
        let credentials = S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        let client = S3Client(endpoint: s3Endpoint, credentials: credentials)
        let signer = SigV4Signer(credentials: credentials, region: "eu-west-3")
        let date = Date(timeIntervalSince1970: 1_790_000_000)
        for key in Self.keys {
            let fast = client.presignedGetURL(key: key, expires: 900, date: date)
            let generic = signer.presign(method: "GET", url: s3Endpoint.objectURL(key: key), expires: 900, date: date)
            #expect(fast == generic, "\(key) on \(endpoint)")
            #expect(fast.hasPrefix(s3Endpoint.objectURL(key: key) + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&"))
        }
    }
}
