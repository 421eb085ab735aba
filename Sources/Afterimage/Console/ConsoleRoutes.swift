import Crypto
import Foundation
import Logging
import MicroHTTP
import Primitives
import S3

/// `GET /ui/`: the web console, static files compiled into the binary (see `EmbeddedConsole`) and answered
/// from memory on the event thread. It reads the lookup API with `fetch` and a bearer token the operator
/// types in; nothing here needs a token, since the files hold no data.
///
/// Every answer carries a Content-Security-Policy that allows only this origin, plus the bucket's origin for
/// images, video and audio (the gallery shows presigned URLs straight from the bucket), and no inline
/// script or style; `nosniff`; `Referrer-Policy: no-referrer`, so a presigned URL or the console's address
/// never leaks to another site; and no framing.
public struct ConsoleRoutes: Sendable {
    let enabled: Bool
    let files: [String: ConsoleFile]
    let securityHeaders: [(String, String)]
    let logger: Logger

    public init(settings: Settings, logger: Logger) {
        enabled = settings.ui.enabled
        self.logger = logger
        files = ConsoleFile.all
        securityHeaders = Self.securityHeaders(bucketOrigin: Self.bucketOrigin(settings.storage))
    }

    public func register(on router: inout Router) {
        guard enabled else { return }
        let toSlash = Response(status: 308, headers: securityHeaders + [("Location", "/ui/")])
        router.add("GET", "/ui", immediate: { _ in toSlash }) { _ in toSlash }
        router.add("GET", "/ui/", immediate: { request in self.serve("index.html", request) }) { request in
            self.serve("index.html", request)
        }
        router.add("GET", "/ui/{file}", immediate: { request in self.serve(request.pathParameters["file"] ?? "", request) }) { request in
            self.serve(request.pathParameters["file"] ?? "", request)
        }
        logger.info("console enabled", metadata: ["path": "/ui/"])
    }

    /// The file, or 304 when the client's copy is current (`If-None-Match`), or 404.
    func serve(_ name: String, _ request: Request) -> Response {
        guard let file = files[name] else {
            var missing = Response.error(status: 404, code: "not_found", message: "no such console file")
            missing.headers += securityHeaders
            return missing
        }
        // Revalidated on every load (cheap: a 304 from memory), so a daemon upgrade shows at once.
        var headers = securityHeaders + [("ETag", file.etag), ("Cache-Control", "no-cache")]
        if let tags = request.header("if-none-match"),
            tags.split(separator: ",").contains(where: {
                $0.trimmingCharacters(in: .whitespaces) == file.etag
            })
        {
            return Response(status: 304, headers: headers)
        }
        headers.append(("Content-Type", file.contentType))
        return Response(status: 200, headers: headers, body: file.body)
    }

    /// The headers every console answer carries.
    static func securityHeaders(bucketOrigin: String?) -> [(String, String)] {
        let media = bucketOrigin.map { "'self' \($0)" } ?? "'self'"
        return [
            (
                "Content-Security-Policy",
                "default-src 'self'; img-src \(media); media-src \(media); frame-ancestors 'none'"
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
    }

    /// `scheme://host[:port]` of the presigned URLs: the endpoint for path-style addressing, the bucket's
    /// own host name (`bucket.endpoint-host`) for virtual-hosted style. Taken from the URL the S3 module
    /// builds for an object, so it is the origin the browser will actually load from. Nil when the storage
    /// settings are incomplete (then `serve` has refused to start anyway).
    static func bucketOrigin(_ storage: Settings.Storage) -> String? {
        guard
            let endpoint = try? S3Endpoint(
                endpoint: storage.endpoint ?? "", region: storage.region, bucket: storage.bucket ?? "",
                pathStyle: storage.pathStyle)
        else { return nil }
        let url = endpoint.objectURL(key: "k")
        guard let separator = url.range(of: "://") else { return nil }
        let afterScheme = url[separator.upperBound...]
        let end = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
        return String(url[url.startIndex..<end])
    }
}

/// One console file as served: its bytes, type and a strong validator.
struct ConsoleFile: Sendable {
    let name: String
    let body: [UInt8]
    let contentType: String
    /// `"` + the first 16 bytes of its SHA-256 in hex + `"`.
    let etag: String

    init(name: String, text: String) {
        self.name = name
        body = Array(text.utf8)
        contentType = Self.contentType(of: name)
        etag = "\"" + Hex.encode(SHA256.hash(data: body).prefix(16)) + "\""
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "svg": "image/svg+xml"
        default: "application/octet-stream"
        }
    }

    static let all: [String: ConsoleFile] = Dictionary(
        uniqueKeysWithValues: EmbeddedConsole.files.map { name, text in
            (name, ConsoleFile(name: name, text: text))
        })
}
