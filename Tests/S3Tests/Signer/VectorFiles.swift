import Crypto
import Foundation
import Primitives
import S3
import Testing

/// Reads the vectors copied into the test bundle (Tests/S3Tests/Vectors, a `.copy` resource).
enum VectorFiles {
    static func directory() throws -> URL {
        try #require(Bundle.module.url(forResource: "Vectors", withExtension: nil))
    }

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: directory().appendingPathComponent(relativePath), encoding: .utf8)
    }

    static func exists(_ relativePath: String) throws -> Bool {
        FileManager.default.fileExists(atPath: try directory().appendingPathComponent(relativePath).path)
    }
}

func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
    Hex.encode(SHA256.hash(data: Array(bytes)))
}

/// A request of the AWS SigV4 test suite (`.req`): request line, `Name:value` headers, blank
/// line, body. The request line's URI may contain spaces (`GET /example space/ HTTP/1.1`).
struct SuiteRequest {
    var method: String
    var uri: String
    var headers: [(String, String)]
    var body: String

    init(parsing text: String) throws {
        let (head, body): (Substring, Substring)
        if let blank = text.range(of: "\n\n") {
            (head, body) = (text[..<blank.lowerBound], text[blank.upperBound...])
        } else {
            (head, body) = (text[...], "")
        }
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false)
        let requestLine = lines.removeFirst()
        let firstSpace = try #require(requestLine.firstIndex(of: " "))
        let lastSpace = try #require(requestLine.lastIndex(of: " "))
        method = String(requestLine[..<firstSpace])
        uri = String(requestLine[requestLine.index(after: firstSpace)..<lastSpace])
        headers = try lines.map { line in
            let colon = try #require(line.firstIndex(of: ":"))
            return (String(line[..<colon]), String(line[line.index(after: colon)...]))
        }
        self.body = String(body)
    }

    var host: String? { headers.first { $0.0.lowercased() == "host" }?.1 }
}
