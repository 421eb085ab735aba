import Curl
import Foundation
import S3
import Synchronization

/// Uploads a spool file in parts (each read straight from the file, never the whole file in memory),
/// several in flight, and aborts the upload on any failure so no orphaned parts keep costing storage.
/// `shouldAbort` (a stopping daemon, a lost lease) is polled by every part in flight: when it says stop,
/// the parts end within about a second and the upload is aborted too.
struct MultipartUpload {
    let storage: S3Client
    let key: String
    let path: String
    let size: Int64
    let partSize: Int64
    let partsInFlight: Int
    var shouldAbort: (@Sendable () -> Bool)? = nil

    /// The AbortMultipartUpload request's own bound: it is the last thing a stopping worker does with S3.
    static let abortRequestTimeout: Duration = .seconds(5)

    func run(contentType: String?, metadata: [String: String]) throws -> String {
        let uploadID = try storage.createMultipartUpload(key: key, contentType: contentType, metadata: metadata)
        let partCount = Int((size + partSize - 1) / partSize)
        let next = Atomic<Int>(1)
        let results = Mutex<(etags: [Int: String], error: (any Error)?)>(([:], nil))
        let threads = ThreadGroup(heartbeats: nil)
        for index in 0..<min(partsInFlight, partCount) {
            threads.spawn("afterimage-part-\(index)") { [shouldAbort] _ in
                while true {
                    let number = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard number <= partCount, results.withLock({ $0.error == nil }) else { return }
                    let offset = Int64(number - 1) * partSize
                    let length = min(partSize, size - offset)
                    do {
                        // Each part is signed with its own payload hash.
                        let sha = try SHA256Hasher.hexDigest(ofFile: path, offset: offset, length: length)
                        let etag = try storage.uploadPart(key: key, uploadId: uploadID, partNumber: number,
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
