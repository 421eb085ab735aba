import Foundation

/// The parts of a Replicate prediction object that Afterimage keeps. Anything else in the body stays in
/// the raw delivery row.
public struct ReplicatePrediction: Sendable {
    public static let statuses: Set<String> = ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
    public static let terminalStatuses: Set<String> = ["succeeded", "failed", "canceled", "aborted"]

    public let id: String
    public let status: String
    public let model: String?
    public let version: String?
    /// JSON text of `input`, `output` and `metrics`, stored as jsonb.
    public let inputJSON: String?
    public let outputJSON: String?
    public let metricsJSON: String?
    public let error: String?
    public let createdAt: Date?
    public let startedAt: Date?
    public let completedAt: Date?
    public let dataRemoved: Bool
    /// The output files this event alone asks to archive: the URLs in its `output`, found in the tree parsed
    /// here, once terminal and unless the provider removed the data. When the event creates the prediction
    /// the merged row is this event, so intake uses these instead of parsing the stored output again.
    public let outputURLs: [OutputURLWalker.Found]

    public var isTerminal: Bool { Self.terminalStatuses.contains(status) }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// Parses a webhook body. Throws when the body is not a prediction (the caller keeps it raw and
    /// answers 400); unknown extra fields are fine, Replicate adds fields over time.
    public static func parse(_ body: [UInt8]) throws(ParseError) -> ReplicatePrediction {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
                throw ParseError(message: "the body is not a JSON object")
            }
            object = parsed
        } catch let error as ParseError {
            throw error
        } catch {
            throw ParseError(message: "the body is not valid JSON")
        }
        guard let id = object["id"] as? String, !id.isEmpty, id.utf8.count <= 256 else {
            throw ParseError(message: "a prediction needs a string id")
        }
        guard let status = object["status"] as? String, statuses.contains(status) else {
            throw ParseError(message: "a prediction needs a status among \(statuses.sorted().joined(separator: ", "))")
        }
        func date(_ key: String) throws(ParseError) -> Date? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let text = value as? String, let parsed = RFC3339.parse(text) else {
                throw ParseError(message: "\(key) is not an RFC 3339 timestamp")
            }
            return parsed
        }
        func errorText(_ value: Any?) -> String? {
            switch value {
            case nil, is NSNull: return nil
            case let text as String: return text
            case let other?: return json(other)
            }
        }
        // input, output and metrics are kept as the provider wrote them (jsonb normalises them anyway):
        // slicing them out of the body is far cheaper than re-serialising the parsed trees.
        let raw = rawMembers(body, ["input", "output", "metrics"])
        func kept(_ key: String) -> String? {
            if let slice = raw?[key] { return slice == "null" ? nil : slice }
            return raw == nil ? json(object[key]) : nil
        }
        let dataRemoved = (object["data_removed"] as? Bool) ?? false
        let urls = terminalStatuses.contains(status) && !dataRemoved ? OutputURLWalker.urls(in: object["output"]) : []
        return ReplicatePrediction(
            id: id, status: status,
            model: object["model"] as? String, version: object["version"] as? String,
            inputJSON: kept("input"), outputJSON: kept("output"), metricsJSON: kept("metrics"),
            error: errorText(object["error"]),
            createdAt: try date("created_at"), startedAt: try date("started_at"), completedAt: try date("completed_at"),
            dataRemoved: dataRemoved, outputURLs: urls)
    }

    /// The raw JSON text of the top-level members named in `keys` (absent ones are missing from the
    /// result); nil when the scanner cannot walk the body, and the caller re-serialises instead.
    static func rawMembers(_ body: [UInt8], _ keys: Set<String>) -> [String: String]? {
        body.withUnsafeBufferPointer { buffer -> [String: String]? in
            var scanner = JSONByteScanner(buffer)
            var found: [String: String] = [:]
            do throws(JSONByteScanner.Failure) {
                try scanner.forEachMember { (scanner: inout JSONByteScanner, key: JSONByteScanner.StringSpan) throws(JSONByteScanner.Failure) in
                    let name = scanner.string(key, limit: 64)
                    _ = scanner.peek()
                    let start = scanner.offset
                    try scanner.skipValue(depth: 1)
                    if let name, keys.contains(name) {
                        // A later duplicate key wins, as it does in JSONSerialization.
                        found[name] = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<scanner.offset]), as: UTF8.self)
                    }
                }
            } catch {
                return nil
            }
            return found
        }
    }

    /// Re-serialises a parsed JSON value (nil and null stay nil: jsonb NULL, not the JSON null).
    static func json(_ value: Any?) -> String? {
        guard let value, !(value is NSNull) else { return nil }
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
