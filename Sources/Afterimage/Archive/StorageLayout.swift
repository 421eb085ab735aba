import Foundation

/// Object keys: `{prefix}{provider}/{prediction_id}/{n}{.ext}`. The same asset always maps to the same
/// key (n is the output's index in walk order, ext comes from the content type), so storing it twice
/// overwrites it with the same bytes instead of making a copy.
public struct StorageLayout: Sendable {
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    public func key(provider: ProviderName, predictionID: String, index: Int, contentType: String?, sourceURL: String?) -> String {
        "\(prefix)\(provider)/\(predictionID)/\(index)\(Self.fileExtension(contentType: contentType, sourceURL: sourceURL))"
    }

    static let extensions: [String: String] = [
        "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
        "image/avif": ".avif", "image/heic": ".heic", "image/svg+xml": ".svg", "image/tiff": ".tiff", "image/bmp": ".bmp",
        "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
        "audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/ogg": ".ogg", "audio/flac": ".flac",
        "application/json": ".json", "text/plain": ".txt", "application/zip": ".zip", "model/gltf-binary": ".glb",
        "application/x-tar": ".tar",
    ]

    /// From the content type; for a generic one (octet-stream, none) a short alphanumeric extension of the
    /// source URL's path is used instead, else none.
    public static func fileExtension(contentType: String?, sourceURL: String?) -> String {
        if let contentType {
            let base = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            if let ext = extensions[base] { return ext }
        }
        if let sourceURL, let path = URL(string: sourceURL)?.path, let dot = path.lastIndex(of: ".") {
            let ext = path[path.index(after: dot)...].lowercased()
            if (1...5).contains(ext.count), ext.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) { return "." + ext }
        }
        return ""
    }
}
