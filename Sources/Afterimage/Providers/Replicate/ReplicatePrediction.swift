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
    /// JSON text of `input`, `output` and `metrics`, stored as jsonb. `output` keeps each data: URI's header
    /// but not its payload (the bytes are in the delivery, and once archived in the bucket; a second copy
    /// in the row would double a large body in memory and in the database). NUL characters, which jsonb
    /// cannot hold, are left out of all three.
    public let inputJSON: String?
    public let outputJSON: String?
    public let metricsJSON: String?
    public let error: String?
    public let createdAt: Date?
    public let startedAt: Date?
    public let completedAt: Date?
    public let dataRemoved: Bool
    /// `api` or `web`: how the prediction was created (web ones are kept by Replicate indefinitely).
    public let source: String?
    /// `owner/name` of the deployment that ran it, when one did.
    public let deployment: String?
    /// When Replicate aborts the prediction if it has not finished (an `aborted` status follows).
    public let deadline: Date?
    /// The output files this event alone asks to archive: the URLs and data: URIs in its `output`, found during
    /// the parse's single pass, once terminal and unless the provider removed the data. When the event creates
    /// the prediction the merged row is this event, so intake uses these instead of parsing the stored output again.
    public let outputs: [OutputURLWalker.Found]
    /// Every output file in `output` whatever the status: where a data: output's bytes are, for decoding it
    /// again from a recorded delivery.
    let outputsInBody: [OutputURLWalker.Found]

    public var isTerminal: Bool { Self.terminalStatuses.contains(status) }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// Parses a webhook body. Throws when the body is not a prediction (the caller keeps it raw and
    /// answers 400); unknown extra fields are fine, Replicate adds fields over time (`urls`, `webhook`,
    /// `webhook_events_filter`, `logs` stay in the raw delivery only).
    ///
    /// Every webhook passes here, so this is one pass of the byte scanner over the body instead of a
    /// Foundation tree: the members Afterimage keeps are located (a later duplicate key wins, as in
    /// JSONSerialization), the output's URLs are found on the way, and only the kept values become
    /// Strings. The body is checked as strictly as JSONSerialization did (UTF-8, escapes, numbers,
    /// nothing after the object), except that nesting deeper than `JSONByteScanner.maxDepth` is refused.
    public static func parse(_ body: [UInt8]) throws(ParseError) -> ReplicatePrediction {
        let result = body.withUnsafeBufferPointer { buffer in
            Result { () throws(ParseError) in try parse(buffer) }
        }
        return try result.get()
    }

    static func parse(_ body: UnsafeBufferPointer<UInt8>) throws(ParseError) -> ReplicatePrediction {
        let invalid = ParseError(message: "the body is not valid JSON")
        guard JSONByteScanner.isValidUTF8(body) else { throw invalid }
        var scanner = JSONByteScanner(body)
        switch scanner.peek() {
        case UInt8(ascii: "{"):
            break
        case UInt8(ascii: "["):
            // Valid JSON but no object: the message says which.
            do throws(JSONByteScanner.Failure) {
                try scanner.skipValue()
                try scanner.expectEnd()
            } catch {
                throw invalid
            }
            throw ParseError(message: "the body is not a JSON object")
        default:
            throw invalid
        }
        var members = Members()
        do throws(JSONByteScanner.Failure) {
            try scanner.forEachMember { (scanner: inout JSONByteScanner, key: JSONByteScanner.StringSpan) throws(JSONByteScanner.Failure) in
                let field = Field(key, in: scanner)
                _ = scanner.peek()
                let start = scanner.offset
                var span: JSONByteScanner.StringSpan?
                var urls: [OutputURLWalker.Found] = []
                if field == .output {
                    urls = try OutputURLWalker.walk(&scanner, depth: 1)
                } else if scanner.peek() == UInt8(ascii: "\"") {
                    span = try scanner.scanString()
                } else {
                    try scanner.skipValue(depth: 1)
                }
                guard let field else { return }
                members.set(field, Member(range: start..<scanner.offset, string: span))
                if field == .output { members.outputURLs = urls }
            }
            try scanner.expectEnd()
        } catch {
            throw invalid
        }

        func string(_ member: Member?, limit: Int = .max) -> String? {
            guard let span = member?.string else { return nil }
            return scanner.string(span, limit: limit)
        }
        // Kept text without NUL characters, which PostgreSQL's text cannot hold (the raw body keeps them).
        func text(_ member: Member?) -> String? { string(member).map(withoutNUL) }
        func json(_ member: Member) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: body[member.range]), as: UTF8.self)
        }
        func isNull(_ member: Member) -> Bool { body[member.range.lowerBound] == UInt8(ascii: "n") }
        // An id of 128 bytes may be written with up to six escaped bytes for each.
        guard let id = string(members.id, limit: 6 * PredictionID.maxBytes) else {
            throw ParseError(message: "a prediction needs a string id")
        }
        guard PredictionID.isSafe(id) else { throw ParseError(message: PredictionID.rule) }
        guard let status = string(members.status), statuses.contains(status) else {
            throw ParseError(message: "a prediction needs a status among \(statuses.sorted().joined(separator: ", "))")
        }
        func date(_ member: Member?, _ key: String) throws(ParseError) -> Date? {
            guard let member, !isNull(member) else { return nil }
            // Timestamps are ASCII without escapes: parsed from the body's bytes, no String made.
            if let span = member.string, !span.hasEscapes, let parsed = Date(rfc3339: UnsafeBufferPointer(rebasing: body[span.range])) {
                return parsed
            }
            guard let text = string(member), let parsed = Date(rfc3339: text) else {
                throw ParseError(message: "\(key) is not an RFC 3339 timestamp")
            }
            return parsed
        }
        // input, output and metrics are kept as the provider wrote them (jsonb normalises them anyway), less
        // NULs; output less its data: payloads.
        func kept(_ member: Member?, elidingData found: [OutputURLWalker.Found] = []) -> String? {
            guard let member, !isNull(member) else { return nil }
            let raw = UnsafeBufferPointer(rebasing: body[member.range])
            let data = found.compactMap { found in found.dataSpan.map { (span: $0, header: found.url) } }
            if data.isEmpty {
                return JSONByteScanner.removingNULEscapes(raw).map { String(decoding: $0, as: UTF8.self) } ?? json(member)
            }
            // Each data: string becomes its header and the comma (`"data:image/png;base64,"`), in byte order.
            var elided: [UInt8] = []
            var from = member.range.lowerBound
            for (span, header) in data.sorted(by: { $0.span.range.lowerBound < $1.span.range.lowerBound }) {
                elided.append(contentsOf: body[from..<span.range.lowerBound])
                elided.append(contentsOf: header.utf8)
                elided.append(UInt8(ascii: ","))
                from = span.range.upperBound
            }
            elided.append(contentsOf: body[from..<member.range.upperBound])
            let clean = elided.withUnsafeBufferPointer { JSONByteScanner.removingNULEscapes($0) } ?? elided
            return String(decoding: clean, as: UTF8.self)
        }
        // error is text for people: a string as itself, anything else as its JSON text.
        func errorText(_ member: Member?) -> String? {
            guard let member, !isNull(member) else { return nil }
            return text(member) ?? json(member)
        }
        let createdAt = try date(members.createdAt, "created_at")
        let startedAt = try date(members.startedAt, "started_at")
        let completedAt = try date(members.completedAt, "completed_at")
        // Replicate sends null until a deadline is set; anything unreadable is left to the raw delivery.
        let deadline = try? date(members.deadline, "deadline")
        let dataRemoved = members.dataRemoved.map { body[$0.range.lowerBound] == UInt8(ascii: "t") } ?? false
        return ReplicatePrediction(
            id: id, status: status,
            model: text(members.model), version: text(members.version),
            inputJSON: kept(members.input), outputJSON: kept(members.output, elidingData: members.outputURLs),
            metricsJSON: kept(members.metrics),
            error: errorText(members.error),
            createdAt: createdAt, startedAt: startedAt, completedAt: completedAt,
            dataRemoved: dataRemoved,
            source: text(members.source).map { String($0.prefix(64)) }, deployment: text(members.deployment),
            deadline: deadline,
            outputs: terminalStatuses.contains(status) && !dataRemoved ? members.outputURLs : [],
            outputsInBody: members.outputURLs)
    }

    /// Where the data: output at `pointer` lies in a recorded body (for decoding it again), or nil.
    static func dataOutput(at pointer: String, in body: UnsafeBufferPointer<UInt8>) -> (span: JSONByteScanner.StringSpan, header: DataURI.Header)? {
        guard let prediction = try? parse(body),
            let found = prediction.outputsInBody.first(where: { $0.pointer == pointer && $0.isData }),
            let span = found.dataSpan, let header = OutputURLWalker.dataHeader(span, in: JSONByteScanner(body))
        else { return nil }
        return (span, header)
    }

    /// `text` without NUL characters.
    static func withoutNUL(_ text: String) -> String {
        guard text.utf8.contains(0) else { return text }
        var text = text
        text.removeAll { $0 == "\0" }
        return text
    }

    /// The top-level members Afterimage reads.
    private enum Field {
        case id, status, model, version, error, createdAt, startedAt, completedAt, dataRemoved, input, output, metrics
        case source, deployment, deadline

        /// The field a key names; an escaped key (`"\u0069d"`) names the field its value spells.
        init?(_ key: JSONByteScanner.StringSpan, in scanner: JSONByteScanner) {
            if key.hasEscapes {
                guard var name = scanner.string(key, limit: 128) else { return nil }
                let field = name.withUTF8 { Self(name: $0) }
                guard let field else { return nil }
                self = field
                return
            }
            guard let field = Self(name: UnsafeBufferPointer(rebasing: scanner.bytes[key.range])) else { return nil }
            self = field
        }

        /// Every key of every webhook passes here: dispatch on the length, then compare the bytes.
        private init?(name: UnsafeBufferPointer<UInt8>) {
            func equals(_ text: StaticString) -> Bool {
                text.utf8CodeUnitCount == name.count && memcmp(text.utf8Start, name.baseAddress!, name.count) == 0
            }
            switch name.count {
            case 2:
                if equals("id") {
                    self = .id
                    return
                }
            case 5:
                if equals("model") {
                    self = .model
                    return
                }
                if equals("error") {
                    self = .error
                    return
                }
                if equals("input") {
                    self = .input
                    return
                }
            case 6:
                if equals("status") {
                    self = .status
                    return
                }
                if equals("output") {
                    self = .output
                    return
                }
                if equals("source") {
                    self = .source
                    return
                }
            case 7:
                if equals("version") {
                    self = .version
                    return
                }
                if equals("metrics") {
                    self = .metrics
                    return
                }
            case 8:
                if equals("deadline") {
                    self = .deadline
                    return
                }
            case 10:
                if equals("created_at") {
                    self = .createdAt
                    return
                }
                if equals("started_at") {
                    self = .startedAt
                    return
                }
                if equals("deployment") {
                    self = .deployment
                    return
                }
            case 12:
                if equals("completed_at") {
                    self = .completedAt
                    return
                }
                if equals("data_removed") {
                    self = .dataRemoved
                    return
                }
            default: break
            }
            return nil
        }
    }

    /// Where a member's value lies in the body; `string` when the value is a string.
    private struct Member {
        let range: Range<Int>
        let string: JSONByteScanner.StringSpan?
    }

    /// The last occurrence of each field, and the URLs found in the last `output`.
    private struct Members {
        var id, status, model, version, error, createdAt, startedAt, completedAt, dataRemoved, input, output, metrics: Member?
        var source, deployment, deadline: Member?
        var outputURLs: [OutputURLWalker.Found] = []

        mutating func set(_ field: Field, _ member: Member) {
            switch field {
            case .id: id = member
            case .status: status = member
            case .model: model = member
            case .version: version = member
            case .error: error = member
            case .createdAt: createdAt = member
            case .startedAt: startedAt = member
            case .completedAt: completedAt = member
            case .dataRemoved: dataRemoved = member
            case .input: input = member
            case .output: output = member
            case .metrics: metrics = member
            case .source: source = member
            case .deployment: deployment = member
            case .deadline: deadline = member
            }
        }
    }
}
