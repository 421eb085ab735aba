import Curl
import Foundation
import S3
import Synchronization

/// Uploads a spool file in parts (each read straight from the file, never the whole file in memory),
/// several in flight, and aborts the upload on any failure so no orphaned parts keep costing storage.
struct MultipartUpload {
    let storage: S3Client
    let key: String
    let path: String
    let size: Int64
    let partSize: Int64
    let partsInFlight: Int

    func run(contentType: String?, metadata: [String: String]) throws -> String {
        let uploadID = try storage.createMultipartUpload(key: key, contentType: contentType, metadata: metadata)
        let partCount = Int((size + partSize - 1) / partSize)
        let next = Atomic<Int>(1)
        let results = Mutex<(etags: [Int: String], error: (any Error)?)>(([:], nil))
        let done = DispatchGroup()
        let threads = (0..<min(partsInFlight, partCount)).map { _ in
            Thread {
                defer { done.leave() }
                while true {
                    let number = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard number <= partCount, results.withLock({ $0.error == nil }) else { return }
                    let offset = Int64(number - 1) * partSize
                    let length = min(partSize, size - offset)
                    do {
                        // Each part is signed with its own payload hash.
                        let sha = try SHA256Hasher.hexDigest(ofFile: path, offset: offset, length: length)
                        let etag = try storage.uploadPart(key: key, uploadId: uploadID, partNumber: number,
                                                          body: .file(path: path, offset: offset, length: length), payloadSHA256Hex: sha)
                        results.withLock { $0.etags[number] = etag }
                    } catch {
                        results.withLock { if $0.error == nil { $0.error = error } }
                        return
                    }
                }
            }
        }
        for thread in threads {
            done.enter()
            thread.start()
        }
        done.wait()
        let (etags, failure) = results.withLock { ($0.etags, $0.error) }
        if let failure {
            try? storage.abortMultipartUpload(key: key, uploadId: uploadID)
            throw failure
        }
        do {
            let parts = (1...partCount).map { ($0, etags[$0] ?? "") }
            return try storage.completeMultipartUpload(key: key, uploadId: uploadID, parts: parts)
        } catch {
            try? storage.abortMultipartUpload(key: key, uploadId: uploadID)
            throw error
        }
    }
}
