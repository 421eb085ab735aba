import Crypto
import Curl
import Foundation
import S3
import TestSupport
import Testing

/// A client for the shared SeaweedFS of the test run (AFTERIMAGE_TEST_S3_*), with a key prefix of
/// its own so tests running in parallel never touch each other's objects.
struct S3Fixture {
    let env: TestEnvironment.S3
    let endpoint: S3Endpoint
    let client: S3Client
    let prefix = "s3tests/\(UUID().uuidString.lowercased())/"

    init() throws {
        env = try TestEnvironment.s3()
        endpoint = try S3Endpoint(endpoint: env.endpoint, region: env.region, bucket: env.bucket)
        client = S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: env.accessKeyID, secretAccessKey: env.secretAccessKey))
    }

    func key(_ name: String) -> String { prefix + name }

    func client(secret: String) -> S3Client {
        S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: env.accessKeyID, secretAccessKey: secret))
    }

    /// A plain HTTP GET, as a browser following a presigned URL would make it.
    static func plainGet(_ url: String) throws -> CurlResponse {
        var options = CurlOptions()
        options.allowedProtocols = ["http", "https"]
        options.totalTimeout = .seconds(30)
        return try CurlSession().perform(CurlRequest(url: url), options: options)
    }
}

/// Deterministic bytes that are not all alike (xorshift), so offsets and part boundaries matter.
func testBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var out = [UInt8]()
    out.reserveCapacity(count)
    for _ in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        out.append(UInt8(truncatingIfNeeded: state))
    }
    return out
}

/// A file of `bytes` in the temporary directory; removed by `remove()`.
struct TempFile {
    let path = NSTemporaryDirectory() + "afterimage-s3test-" + UUID().uuidString
    init(_ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Expects `body` to throw an S3Error whose code is one of `codes`.
func expectS3Error<T>(
    _ codes: Set<S3Error.Code>, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(S3Error) -> T
) {
    do {
        _ = try body()
        Issue.record("expected S3Error \(codes), got success", sourceLocation: sourceLocation)
    } catch {
        #expect(codes.contains(error.code), "got \(error)", sourceLocation: sourceLocation)
    }
}
