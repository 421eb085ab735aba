import Foundation

/// What a handler answers. The server adds `Content-Length` (libmicrohttpd computes it from the
/// body), so handlers never set it; `Transfer-Encoding` is likewise ignored.
public struct Response: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON answer from a value. Keys are sorted so bodies are stable (tests, caches, diffs);
    /// a value that cannot be encoded becomes a 500 rather than a half-written body.
    public static func json(status: Int = 200, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else {
            return .error(status: 500, code: "internal_error", message: "the response could not be encoded")
        }
        return json(status: status, raw: [UInt8](data))
    }

    /// A JSON answer from bytes already encoded (for example a stored webhook body).
    public static func json(status: Int = 200, raw: [UInt8]) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: raw)
    }

    /// The one error shape of the API: `{"error":{"code":"…","message":"…"}}`. Callers pass a
    /// fixed message; nothing from the request body is ever put in it.
    public static func error(status: Int, code: String, message: String, headers: [(String, String)] = []) -> Response {
        var response = json(status: status, ErrorBody(error: .init(code: code, message: message)))
        response.headers.append(contentsOf: headers)
        return response
    }
}

private struct ErrorBody: Encodable {
    struct Detail: Encodable {
        let code: String
        let message: String
    }
    let error: Detail
}
