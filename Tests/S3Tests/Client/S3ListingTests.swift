import Foundation
import S3
import TestSupport
import Testing

/// Listings under a prefix (what a delete removes), against the real SeaweedFS of the test run.
@Suite("S3 listings against SeaweedFS")
struct S3ListingTests {
    @Test func listsEveryKeyUnderAPrefixAcrossPagesAndNothingBeside() throws {
        let s3 = try S3Fixture()
        let prefix = s3.key("listing/")
        // More than one page would need 1000 keys; a prefix that is also the start of another one tests the
        // trailing slash instead, and awkward characters test the query's encoding.
        let names = ["0.png", "1 with space.png", "2+plus.png", "nested/3.png"]
        for name in names { try s3.client.putObject(key: prefix + name, body: .bytes([1]), contentType: nil) }
        try s3.client.putObject(key: String(prefix.dropLast()) + "x/other.png", body: .bytes([1]), contentType: nil)
        #expect(Set(try s3.client.allKeys(prefix: prefix)) == Set(names.map { prefix + $0 }))
        #expect(try s3.client.allKeys(prefix: prefix + "nothing-here/").isEmpty)
    }

    @Test func listsAndAbortsUnfinishedMultipartUploads() throws {
        let s3 = try S3Fixture()
        let prefix = s3.key("uploads/")
        let id = try s3.client.createMultipartUpload(key: prefix + "big.bin", contentType: nil)
        let found = try s3.client.listMultipartUploads(prefix: prefix)
        #expect(found.map(\.uploadId) == [id])
        #expect(found.first?.key == prefix + "big.bin")
        try s3.client.abortMultipartUpload(key: prefix + "big.bin", uploadId: id)
        #expect(try s3.client.listMultipartUploads(prefix: prefix).isEmpty)
    }
}
