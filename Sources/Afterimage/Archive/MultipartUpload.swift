import Curl
import Foundation
import S3
import Synchronization

/// Uploads a spool file in parts (each read straight from the file, never the whole file in memory),
/// several in flight, and aborts the upload on any failure so no orphaned parts keep costing storage.
/// `shouldAbort` (a stopping daemon, a lost lease) is polled by every part in flight: when it says stop,
/// the parts end within about a second and the upload is aborted too.
///
/// Each part is signed with its own SHA-256, which the store checks; the store never sees a hash of the
/// whole object. So the whole file's SHA-256 is accumulated from the same reads that hash the parts, and
/// compared with the recorded one (`expectedSHA256`) before `CompleteMultipartUpload`: a spool file that
/// changed since it was recorded is never stored under a SHA-256 that is not its own.
struct MultipartUpload {
    let storage: S3Client
    let key: String
    let path: String
    let size: Int64
    let partSize: Int64
    let partsInFlight: Int
    /// The recorded SHA-256 (hex) of the whole file; nil skips the comparison.
    var expectedSHA256: String? = nil
    var shouldAbort: (@Sendable () -> Bool)? = nil

    /// The AbortMultipartUpload request's own bound: it is the last thing a stopping worker does with S3.
    static let abortRequestTimeout: Duration = .seconds(5)

    func run(contentType: String?, metadata: [String: String]) throws -> String {
        let uploadID = try storage.createMultipartUpload(key: key, contentType: contentType, metadata: metadata)
        let partCount = Int((size + partSize - 1) / partSize)
        // Parts are handed out in order and hashed as they are handed out, under this lock, so the reads
        // that hash the parts also hash the whole file in order (SHA-256 cannot be combined from the parts'
        // hashes); the uploads themselves run in parallel. Hashing runs far faster than an upload.
        let handout = Mutex<(next: Int, whole: SHA256Hasher)>((1, SHA256Hasher()))
        let results = Mutex<(etags: [Int: String], error: (any Error)?)>(([:], nil))
        let threads = ThreadGroup(heartbeats: nil)
        for index in 0..<min(partsInFlight, partCount) {
            threads.spawn("afterimage-part-\(index)") { [shouldAbort] _ in
                while true {
                    guard results.withLock({ $0.error == nil }) else { return }
                    do {
                        // Each part is signed with its own payload hash.
                        let claimed = try handout.withLock { state -> (number: Int, sha: String)? in
                            guard state.next <= partCount else { return nil }
                            let number = state.next
                            state.next += 1
                            let offset = Int64(number - 1) * partSize
                            let sha = try SHA256Hasher.hexDigest(
                                ofFile: path, offset: offset, length: min(partSize, size - offset),
                                feeding: &state.whole)
                            return (number, sha)
                        }
                        guard let (number, sha) = claimed else { return }
                        let offset = Int64(number - 1) * partSize
                        let length = min(partSize, size - offset)
                        let etag = try storage.uploadPart(
                            key: key, uploadId: uploadID, partNumber: number,
                            body: .file(path: path, offset: offset, length: length), payloadSHA256Hex: sha,
                            shouldAbort: shouldAbort)
                        results.withLock { $0.etags[number] = etag }
                    } catch {
                        results.withLock { if $0.error == nil { $0.error = error } }
                        return
                    }
                }
            }
        }
        threads.join()
        let (etags, failure) = results.withLock { ($0.etags, $0.error) }
        if let failure {
            abort(uploadID)
            throw failure
        }
        if shouldAbort?() == true {
            abort(uploadID)
            throw ArchiveError(.aborted, "stopping")
        }
        let whole = handout.withLock { $0.whole.hex() }
        if let expectedSHA256, whole != expectedSHA256 {
            abort(uploadID)
            throw ArchiveError(
                .spool, "the spool file changed since it was recorded: its SHA-256 is \(whole), recorded \(expectedSHA256); not stored")
        }
        do {
            let parts = (1...partCount).map { ($0, etags[$0] ?? "") }
            return try storage.completeMultipartUpload(key: key, uploadId: uploadID, parts: parts)
        } catch {
            abort(uploadID)
            throw error
        }
    }

    private func abort(_ uploadID: String) {
        try? storage.abortMultipartUpload(key: key, uploadId: uploadID, timeout: Self.abortRequestTimeout)
    }
}
