import Curl

/// Multipart upload: for objects past the single-PUT comfort zone (the worker switches over at a
/// size it chooses; S3 requires every part but the last to be at least 5 MiB, at most 10,000 parts).
extension S3Client {
    /// Starts an upload and returns its UploadId. Content type and metadata are given here, not
    /// at completion.
    public func createMultipartUpload(key: String, contentType: String?, metadata: [String: String] = [:]) throws(S3Error) -> String {
        let operation = "POST \(key)?uploads"
        try Self.validate(key: key)
        let headers = try Self.objectHeaders(contentType: contentType, metadata: metadata)
        let response = try send(
            "POST", url: endpoint.objectURL(key: key) + "?uploads", headers: headers,
            body: .bytes([]), operation: operation, maxBytes: Self.maxXMLResponseBytes)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation)
        }
        guard let uploadId = MiniXML.first("UploadId", in: String(decoding: response.body, as: UTF8.self)), !uploadId.isEmpty else {
            throw S3Error(.invalidResponse, "\(operation): HTTP \(response.status) without an UploadId", status: response.status)
        }
        return uploadId
    }

    /// Uploads part `partNumber` (1...10000) and returns its ETag, to be passed to completion.
    /// `shouldAbort` is polled about once a second while the part goes up (see `putObject`).
    public func uploadPart(
        key: String, uploadId: String, partNumber: Int, body: RequestBody,
        payloadSHA256Hex: String? = nil, shouldAbort: (@Sendable () -> Bool)? = nil
    ) throws(S3Error) -> String {
        let operation = "PUT \(key) part \(partNumber)"
        try Self.validate(key: key)
        guard (1...10_000).contains(partNumber) else {
            throw S3Error(.invalidArgument, "\(operation): part number must be 1...10000")
        }
        let hash = try payloadHash(payloadSHA256Hex, body: body)
        let response = try send(
            "PUT", url: uploadURL(key: key, uploadId: uploadId, partNumber: partNumber),
            body: body, payloadHash: hash, operation: operation, maxBytes: Self.maxXMLResponseBytes,
            shouldAbort: shouldAbort)
        guard response.isSuccess else {
            throw S3Error.from(status: response.status, body: response.body, operation: operation, notFound: .noSuchUpload)
        }
        guard let etag = response.headers.trimmed("etag"), !etag.isEmpty else {
            throw S3Error(.invalidResponse, "\(operation): HTTP \(response.status) without an ETag", status: response.status)
        }
        return etag
    }

    /// Assembles the parts (sorted by number here, as S3 requires) and returns the object's ETag.
    /// S3 may answer 200 and still put an `<Error>` in the body: that is an error too.
    @discardableResult
    public func completeMultipartUpload(key: String, uploadId: String, parts: [(Int, String)]) throws(S3Error) -> String {
        let operation = "POST \(key) complete"
        try Self.validate(key: key)
        guard !parts.isEmpty, parts.count <= 10_000 else {
            throw S3Error(.invalidArgument, "\(operation): 1 to 10000 parts required, got \(parts.count)")
        }
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for (number, etag) in parts.sorted(by: { $0.0 < $1.0 }) {
            xml += "<Part><PartNumber>\(number)</PartNumber><ETag>\(MiniXML.escape(etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        let response = try send(
            "POST", url: uploadURL(key: key, uploadId: uploadId, partNumber: nil),
            headers: [("Content-Type", "application/xml")], body: .bytes(body),
            payloadHash: try payloadHash(nil, body: .bytes(body)), operation: operation,
            maxBytes: Self.maxXMLResponseBytes)
        let text = String(decoding: response.body, as: UTF8.self)
        guard response.isSuccess, !text.contains("<Error>") else {
            throw S3Error.from(
                status: response.isSuccess ? 500 : response.status, body: response.body,
                operation: operation, notFound: .noSuchUpload)
        }
        return MiniXML.first("ETag", in: text) ?? response.headers.trimmed("etag") ?? ""
    }

    /// Discards an upload's parts. An upload that is already gone counts as aborted. Bounded by
    /// `timeout` as a whole: it is what a stopping daemon does last with an upload.
    public func abortMultipartUpload(key: String, uploadId: String, timeout: Duration = .seconds(10)) throws(S3Error) {
        let operation = "DELETE \(key) upload"
        try Self.validate(key: key)
        let response = try send(
            "DELETE", url: uploadURL(key: key, uploadId: uploadId, partNumber: nil), operation: operation,
            totalTimeout: timeout)
        if response.isSuccess { return }
        let error = S3Error.from(status: response.status, body: response.body, operation: operation, notFound: .noSuchUpload)
        if error.code == .noSuchUpload { return }
        throw error
    }

    private func uploadURL(key: String, uploadId: String, partNumber: Int?) -> String {
        var url = endpoint.objectURL(key: key) + "?"
        if let partNumber { url += "partNumber=\(partNumber)&" }
        return url + "uploadId=" + S3URIEncoding.encode(uploadId, encodeSlash: true)
    }
}
