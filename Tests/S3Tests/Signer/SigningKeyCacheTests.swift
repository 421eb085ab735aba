import Foundation
import S3
import Testing

/// The signer caches derived keys per (day, region, service); a cached key must never sign for another day.
@Suite("SigV4 signing key cache")
struct SigningKeyCacheTests {
    static let credentials = S3Credentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")

    /// The same signer, reused across many days and back again, signs exactly like a fresh signer each time.
    @Test func aReusedSignerSignsLikeAFreshOneOnEveryDay() {
        let reused = SigV4Signer(credentials: Self.credentials, region: "us-east-1")
        let start = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24, the AWS example's day
        // More days than the cache holds, then the first days again, so both hits and evictions are exercised.
        let offsets = Array(0..<20) + [0, 1, 19, 0]
        for offset in offsets {
            let date = start.addingTimeInterval(TimeInterval(offset) * 86_400 + 3_600)
            let fresh = SigV4Signer(credentials: Self.credentials, region: "us-east-1")
            let url = "https://examplebucket.s3.amazonaws.com/test.txt"
            #expect(
                reused.presign(method: "GET", url: url, expires: 60, date: date)
                    == fresh.presign(method: "GET", url: url, expires: 60, date: date), "day +\(offset)")
        }
    }

    /// Signers for other regions or services never share a key, even on the same day.
    @Test func regionAndServiceArePartOfTheKey() {
        let date = Date(timeIntervalSince1970: 1_369_353_600)
        let url = "https://examplebucket.s3.amazonaws.com/test.txt"
        let east = SigV4Signer(credentials: Self.credentials, region: "us-east-1")
        let west = SigV4Signer(credentials: Self.credentials, region: "eu-west-1")
        let other = SigV4Signer(credentials: Self.credentials, region: "us-east-1", service: "s3-object-lambda")
        let signatures = [east, west, other, east].map { $0.presignDetails(method: "GET", url: url, expires: 60, date: date).signature }
        #expect(Set(signatures).count == 3)
        #expect(signatures[0] == signatures[3])
    }

    /// Many threads signing at once (the lookup API's connection threads) agree with a single-threaded run.
    @Test func concurrentSigningAgrees() async {
        let signer = SigV4Signer(credentials: Self.credentials, region: "us-east-1")
        let url = "https://examplebucket.s3.amazonaws.com/a/b.png"
        let dates = (0..<12).map { Date(timeIntervalSince1970: 1_700_000_000 + TimeInterval($0) * 43_200) }
        let expected = dates.map {
            SigV4Signer(credentials: Self.credentials, region: "us-east-1").presign(method: "GET", url: url, expires: 300, date: $0)
        }
        let results = await withTaskGroup(of: (Int, String).self) { group in
            for round in 0..<96 {
                let index = round % dates.count
                group.addTask { (index, signer.presign(method: "GET", url: url, expires: 300, date: dates[index])) }
            }
            var all: [(Int, String)] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(results.count == 96)
        for (index, url) in results { #expect(url == expected[index]) }
    }
}

/// The presign fast path (no query, no token, no extra parameters) must write exactly the general rule's
/// canonical query; the documentation vector covers one URL, this covers keys and lifetimes of every shape.
@Suite("SigV4 presign fast path")
struct PresignFastPathTests {
    @Test func theCanonicalQueryIsTheGeneralRulesForManyKeys() throws {
        let signer = SigV4Signer(
            credentials: S3Credentials(accessKeyID: "AK/with+odd=chars", secretAccessKey: "secret"),
            region: "eu-central-1")
        let date = Date(timeIntervalSince1970: 1_763_700_000)
        for key in ["a.png", "replicate/p1/0.webp", "dir/with space/ü.png", "a%2Fb", "x//y", "~tilde_-.", "plus+sign=eq"] {
            for expires in [1, 3600, 604_800] {
                let details = signer.presignDetails(method: "GET", url: "http://127.0.0.1:9000/bucket/\(key)", expires: expires, date: date)
                let queryLine = try #require(details.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).first)
                let pairs: [(String, String)] = [
                    ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                    ("X-Amz-Credential", "AK/with+odd=chars/20251121/eu-central-1/s3/aws4_request"),
                    ("X-Amz-Date", SigV4Signer.amzDate(date)),
                    ("X-Amz-Expires", String(expires)),
                    ("X-Amz-SignedHeaders", "host"),
                ]
                let general = pairs.map { "\(S3URIEncoding.encode($0.0, encodeSlash: true))=\(S3URIEncoding.encode($0.1, encodeSlash: true))" }
                    .sorted().joined(separator: "&")
                #expect(String(queryLine) == general, "\(key), \(expires)")
                #expect(details.url.contains("?" + general + "&X-Amz-Signature="))
            }
        }
    }
}
