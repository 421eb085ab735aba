/// Listings under a key prefix: what a delete must remove (every object of a prediction, and uploads
/// that were started but never completed, whose parts S3 keeps and bills until they are aborted).
extension S3Client {
    /// One page of at most 1000 keys under `prefix` (ListObjectsV2), and the token of the next page.
    public func listObjects(prefix: String, continuationToken: String? = nil) throws(S3Error) -> (keys: [String], next: String?) {
        let operation = "GET bucket ?list-type=2 prefix \(prefix)"
        var query = [("list-type", "2"), ("prefix", prefix)]
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let text = try list(query: query, operation: operation)
        let keys = MiniXML.all("Contents", in: text).compactMap { MiniXML.first("Key", in: $0) }
        let truncated = MiniXML.first("IsTruncated", in: text) == "true"
        return (keys, truncated ? MiniXML.first("NextContinuationToken", in: text) : nil)
    }

    /// Every key under `prefix`, page after page.
    public func allKeys(prefix: String) throws(S3Error) -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            let page = try listObjects(prefix: prefix, continuationToken: token)
            keys += page.keys
            token = page.next
        } while token != nil
        return keys
    }

    /// Multipart uploads started under `prefix` and neither completed nor aborted (first 1000).
    public func listMultipartUploads(prefix: String) throws(S3Error) -> [(key: String, uploadId: String)] {
        let text = try list(query: [("uploads", ""), ("prefix", prefix)], operation: "GET bucket ?uploads prefix \(prefix)")
        return MiniXML.all("Upload", in: text).compactMap { upload in
            guard let key = MiniXML.first("Key", in: upload), let id = MiniXML.first("UploadId", in: upload) else { return nil }
            return (key, id)
        }
    }

    private func list(query: [(String, String)], operation: String) throws(S3Error) -> String {
        // Sorted and encoded as SigV4's canonical query wants it, so the URL is sent exactly as signed.
        let encoded = query.sorted { $0.0 < $1.0 }
            .map { "\(S3URIEncoding.encode($0.0, encodeSlash: true))=\(S3URIEncoding.encode($0.1, encodeSlash: true))" }
            .joined(separator: "&")
        let response = try send("GET", url: endpoint.bucketURL + "?" + encoded, operation: operation, maxBytes: 8 << 20)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        return String(decoding: response.body, as: UTF8.self)
    }
}
