import Foundation

/// The body of `POST /v1/archives`: `{"id", "urls": [...], "deadline"?, "metadata"?}`. Anything an app
/// got a URL for that will expire (OpenAI images after 60 minutes, Black Forest Labs' `sample` after 10,
/// Runway's outputs within a day or two) is archived under `archive/{id}/{n}{.ext}`.
struct ArchiveRequest: Sendable, Equatable {
    let id: String
    let urls: [String]
    /// When the source goes away; nil: no deadline (claimed after every asset that has one).
    let deadline: Date?
    /// The app's own description, kept as the prediction's input (JSON text).
    let metadataJSON: String?

    static let maxURLs = 100
    static let maxURLBytes = 8192
    static let maxMetadataBytes = 16 << 10

    struct Invalid: Error, Equatable {
        let message: String
    }

    /// Checks the shape; the URLs themselves are judged by the fetch policy afterwards (422).
    static func parse(_ body: [UInt8]) throws(Invalid) -> ArchiveRequest {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw Invalid(message: "the body must be a JSON object")
        }
        guard let id = object["id"] as? String else { throw Invalid(message: "id must be a string") }
        guard PredictionID.isSafe(id) else { throw Invalid(message: "id: " + PredictionID.rule) }
        guard let list = object["urls"] as? [Any], !list.isEmpty else { throw Invalid(message: "urls must be a non-empty array") }
        guard list.count <= maxURLs else { throw Invalid(message: "urls may list at most \(maxURLs) URLs") }
        var urls: [String] = []
        for (index, entry) in list.enumerated() {
            guard let url = entry as? String, !url.isEmpty, url.utf8.count <= maxURLBytes else {
                throw Invalid(message: "urls[\(index)] must be a URL of at most \(maxURLBytes) bytes")
            }
            urls.append(url)
        }
        var deadline: Date?
        if let value = object["deadline"], !(value is NSNull) {
            guard let text = value as? String, let parsed = Date(rfc3339: text) else {
                throw Invalid(message: "deadline must be an RFC 3339 timestamp such as 2026-11-21T10:00:00Z")
            }
            deadline = parsed
        }
        var metadataJSON: String?
        if let metadata = object["metadata"], !(metadata is NSNull) {
            guard metadata is [String: Any], let data = try? JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys]) else {
                throw Invalid(message: "metadata must be a JSON object")
            }
            guard data.count <= maxMetadataBytes else { throw Invalid(message: "metadata must be at most \(maxMetadataBytes) bytes") }
            metadataJSON = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\\u0000", with: "")
        }
        return ArchiveRequest(id: id, urls: urls, deadline: deadline, metadataJSON: metadataJSON)
    }

    /// The URLs as the prediction's output: a JSON array, compared with a later request for the same id.
    var outputJSON: String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: urls, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8), as: UTF8.self)
    }
}
