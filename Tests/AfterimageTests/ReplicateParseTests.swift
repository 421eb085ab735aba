import Foundation
import TestSupport
import Testing

@testable import Afterimage

/// The byte-scanner parse of Replicate bodies must answer exactly as the JSONSerialization parse it
/// replaced: same fields, same output URLs, same refusals. The old parse is kept here as the reference,
/// with the rules added since written into it: safe ids (at most 128 bytes, no `/`, `\`, control
/// characters, `.` or `..`), NUL characters left out of the kept fields, data: outputs found with the URLs
/// and kept in `output` without their payload.
@Suite("Replicate body parsing against the JSONSerialization reference")
struct ReplicateParseTests {
    // MARK: - The reference: ReplicatePrediction.parse as it was before the byte scanner

    struct ReferenceError: Error { let message: String }

    static func referenceParse(_ body: [UInt8]) throws(ReferenceError) -> Snapshot {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
                throw ReferenceError(message: "the body is not a JSON object")
            }
            object = parsed
        } catch let error as ReferenceError {
            throw error
        } catch {
            throw ReferenceError(message: "the body is not valid JSON")
        }
        guard let id = object["id"] as? String, id.utf8.count <= 6 * 128 else {
            throw ReferenceError(message: "a prediction needs a string id")
        }
        guard !id.isEmpty, id.utf8.count <= 128, id != ".", id != "..",
            !id.unicodeScalars.contains(where: { "/\\".unicodeScalars.contains($0) || $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        else {
            throw ReferenceError(message: PredictionID.rule)
        }
        let statuses = ReplicatePrediction.statuses
        guard let status = object["status"] as? String, statuses.contains(status) else {
            throw ReferenceError(message: "a prediction needs a status among \(statuses.sorted().joined(separator: ", "))")
        }
        func date(_ key: String) throws(ReferenceError) -> Date? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let text = value as? String, let parsed = Date(rfc3339: text) else {
                throw ReferenceError(message: "\(key) is not an RFC 3339 timestamp")
            }
            return parsed
        }
        func errorText(_ value: Any?) -> String? {
            switch value {
            case nil, is NSNull: return nil
            case let text as String: return withoutNUL(text)
            case let other?: return json(other)
            }
        }
        // The old code sliced these three out with the scanner (JSONSerialization's values re-serialised
        // only when the scanner could not walk the body); the slices are taken the same way here.
        let raw = referenceRawMembers(body, ["input", "output", "metrics"])
        func kept(_ key: String) -> String? {
            if let slice = raw?[key] {
                if slice == "null" { return nil }
                // NULs and data: payloads are left out: then compared as canonical JSON (see `newParse`).
                guard slice.contains("\\u0000") || (key == "output" && !OutputURLWalker.urls(in: object[key]).filter(\.isData).isEmpty) else {
                    return slice
                }
                return json(cleaned(object[key]))
            }
            return raw == nil ? json(object[key]) : nil
        }
        let dataRemoved = (object["data_removed"] as? Bool) ?? false
        let terminal = ReplicatePrediction.terminalStatuses.contains(status)
        return Snapshot(
            id: id, status: status, model: (object["model"] as? String).map(withoutNUL), version: (object["version"] as? String).map(withoutNUL),
            inputJSON: kept("input"), outputJSON: kept("output"), metricsJSON: kept("metrics"),
            error: errorText(object["error"]),
            createdAt: try date("created_at"), startedAt: try date("started_at"), completedAt: try date("completed_at"),
            dataRemoved: dataRemoved,
            outputURLs: terminal && !dataRemoved ? OutputURLWalker.urls(in: object["output"]) : [])
    }

    static func referenceRawMembers(_ body: [UInt8], _ keys: Set<String>) -> [String: String]? {
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
                        found[name] = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<scanner.offset]), as: UTF8.self)
                    }
                }
            } catch {
                return nil
            }
            return found
        }
    }

    static func withoutNUL(_ text: String) -> String { text.replacingOccurrences(of: "\0", with: "") }

    /// A JSON value as the kept copy has it: NULs left out of strings and keys, data: URIs cut to their header.
    static func cleaned(_ value: Any?) -> Any? {
        switch value {
        case let text as String:
            if let header = DataURI.header(text.utf8.prefix(DataURI.maxHeaderBytes + 1)) { return header.text + "," }
            return withoutNUL(text)
        case let array as [Any]: return array.map { cleaned($0) ?? NSNull() }
        case let object as [String: Any]:
            var out: [String: Any] = [:]
            for (key, member) in object { out[withoutNUL(key)] = cleaned(member) ?? NSNull() }
            return out
        default: return value
        }
    }

    /// The old re-serialisation (sorted keys) of a non-string `error`.
    static func json(_ value: Any?) -> String? {
        guard let value, !(value is NSNull) else { return nil }
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Every field of a parsed prediction, compared byte for byte (Swift's `==` on strings would call
    /// "é" and "e\u{301}" equal; the database and the storage keys would not).
    struct Snapshot: Equatable, CustomStringConvertible {
        var id: String, status: String, model: String?, version: String?
        var inputJSON: String?, outputJSON: String?, metricsJSON: String?, error: String?
        var createdAt: Date?, startedAt: Date?, completedAt: Date?
        var dataRemoved: Bool
        var outputURLs: [OutputURLWalker.Found]

        init(
            id: String, status: String, model: String?, version: String?, inputJSON: String?, outputJSON: String?,
            metricsJSON: String?, error: String?, createdAt: Date?, startedAt: Date?, completedAt: Date?,
            dataRemoved: Bool, outputURLs: [OutputURLWalker.Found]
        ) {
            self.id = id
            self.status = status
            self.model = model
            self.version = version
            self.inputJSON = inputJSON
            self.outputJSON = outputJSON
            self.metricsJSON = metricsJSON
            self.error = error
            self.createdAt = createdAt
            self.startedAt = startedAt
            self.completedAt = completedAt
            self.dataRemoved = dataRemoved
            self.outputURLs = outputURLs
        }

        init(_ p: ReplicatePrediction) {
            self.init(
                id: p.id, status: p.status, model: p.model, version: p.version, inputJSON: p.inputJSON,
                outputJSON: p.outputJSON, metricsJSON: p.metricsJSON, error: p.error, createdAt: p.createdAt,
                startedAt: p.startedAt, completedAt: p.completedAt, dataRemoved: p.dataRemoved, outputURLs: p.outputs)
        }

        static func == (lhs: Snapshot, rhs: Snapshot) -> Bool { lhs.bytes == rhs.bytes }

        private var bytes: [[UInt8]?] {
            let texts: [String?] = [id, status, model, version, inputJSON, outputJSON, metricsJSON, error]
            let dates = [createdAt, startedAt, completedAt].map { $0.map { Array("\($0.timeIntervalSince1970)".utf8) } }
            return texts.map { $0.map { Array($0.utf8) } } + dates + [[dataRemoved ? 1 : 0]]
                + outputURLs.flatMap { [Array($0.pointer.utf8), Array($0.url.utf8)] }
        }

        var description: String {
            "id=\(id.debugDescription) status=\(status) model=\(String(describing: model)) version=\(String(describing: version)) "
                + "input=\(String(describing: inputJSON)) output=\(String(describing: outputJSON)) metrics=\(String(describing: metricsJSON)) "
                + "error=\(String(describing: error)) dates=\(String(describing: createdAt)),\(String(describing: startedAt)),\(String(describing: completedAt)) "
                + "dataRemoved=\(dataRemoved) urls=\(outputURLs)"
        }
    }

    /// The new parse's answer in the reference's terms. A non-string `error` is now the provider's own
    /// JSON text rather than a sorted-keys re-serialisation: it is compared after re-serialising it.
    static func newParse(_ body: [UInt8], normalisingErrorFor reference: Snapshot?) -> Result<Snapshot, ReferenceError> {
        do {
            var snapshot = Snapshot(try ReplicatePrediction.parse(body))
            // A kept JSON field the reference had to clean (NULs, data: payloads) is compared as canonical JSON.
            func canonical(_ text: String?, _ expected: String?) -> String? {
                guard let text, let expected, text != expected,
                    let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
                else { return text }
                return json(value)
            }
            snapshot.inputJSON = canonical(snapshot.inputJSON, reference?.inputJSON)
            snapshot.outputJSON = canonical(snapshot.outputJSON, reference?.outputJSON)
            snapshot.metricsJSON = canonical(snapshot.metricsJSON, reference?.metricsJSON)
            if let error = snapshot.error, let reference, reference.error != error,
                let value = try? JSONSerialization.jsonObject(with: Data(error.utf8), options: .fragmentsAllowed), !(value is String)
            {
                snapshot.error = json(value)
            }
            return .success(snapshot)
        } catch {
            return .failure(ReferenceError(message: error.message))
        }
    }

    /// Both parses on one body: the same fields, or the same refusal.
    static func expectSameAnswer(_ body: [UInt8], _ label: @autoclosure () -> String) {
        let reference: Result<Snapshot, ReferenceError> = Result { () throws(ReferenceError) in try referenceParse(body) }
        let new = newParse(body, normalisingErrorFor: try? reference.get())
        switch (reference, new) {
        case (.success(let old), .success(let new)):
            #expect(old == new, "\(label())\n old: \(old)\n new: \(new)")
        case (.failure(let old), .failure(let new)):
            #expect(old.message == new.message, "\(label())")
        case (.success(let old), .failure(let new)):
            Issue.record("\(label()): the reference parsed (\(old)) but the new parse refused: \(new.message)")
        case (.failure(let old), .success(let new)):
            Issue.record("\(label()): the reference refused (\(old.message)) but the new parse gave \(new)")
        }
    }

    /// Found lists compared byte for byte (see Snapshot).
    static func exact(_ found: [OutputURLWalker.Found]) -> [[UInt8]] {
        found.flatMap { [Array($0.pointer.utf8), Array($0.url.utf8)] }
    }

    // MARK: - Fixtures and generated bodies

    static func fixtures() throws -> [(String, [UInt8])] {
        let directory = TestEnvironment.fixturesDirectory.appendingPathComponent("replicate")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
        return try names.map { ($0, Array(try Data(contentsOf: directory.appendingPathComponent($0)))) }
    }

    @Test func everyFixtureParsesAsBefore() throws {
        let fixtures = try Self.fixtures()
        #expect(fixtures.count >= 7)
        for (name, body) in fixtures {
            Self.expectSameAnswer(body, name)
            // And the intake path that re-reads the stored output text.
            let prediction = try ReplicatePrediction.parse(body)
            let stored = prediction.outputJSON.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) }
            #expect(
                Self.exact(OutputURLWalker.urls(inJSON: prediction.outputJSON ?? "null")) == Self.exact(OutputURLWalker.urls(in: stored)), "\(name)")
        }
    }

    @Test func generatedBodiesParseAsBefore() {
        var generator = BodyGenerator(seed: 0x5EED_0F_AF7E_4143)
        var parsed = 0
        var withURLs = 0
        var refused = 0
        for index in 0..<600 {
            let body = generator.body()
            Self.expectSameAnswer(Array(body.utf8), "body \(index): \(body)")
            switch Result(catching: { () throws(ReplicatePrediction.ParseError) in try ReplicatePrediction.parse(Array(body.utf8)) }) {
            case .success(let p):
                parsed += 1
                if !p.outputs.isEmpty { withURLs += 1 }
            case .failure: refused += 1
            }
        }
        // The generator must exercise both sides, and URLs in outputs.
        #expect(parsed > 300)
        #expect(withURLs > 100)
        #expect(refused > 20)
    }

    @Test func walkOverStoredTextMatchesTheTreeWalk() throws {
        var generator = BodyGenerator(seed: 42)
        var nonEmpty = 0
        for index in 0..<400 {
            let text = generator.value(depth: 0, urlBias: true)
            let tree = try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
            let expected = OutputURLWalker.urls(in: tree)
            #expect(Self.exact(OutputURLWalker.urls(inJSON: text)) == Self.exact(expected), "value \(index): \(text)")
            if !expected.isEmpty { nonEmpty += 1 }
        }
        #expect(nonEmpty > 100)
        #expect(OutputURLWalker.urls(inJSON: "[\"https://x.example/1\",") == [])
        #expect(OutputURLWalker.urls(inJSON: "\"https://x.example/1\"") == [.init(pointer: "", url: "https://x.example/1")])
    }

    @Test func duplicateAndEquivalentKeysInOutputs() {
        // A later duplicate replaces an earlier one even with no URL; canonically equivalent keys are one
        // key (as in a Swift dictionary): the first spelling is kept, the last value wins.
        let cases = [
            #"{"a":"https://x/1","a":3}"#,
            #"{"a":3,"a":"https://x/1"}"#,
            #"{"\u00e9":"https://x/1","e\u0301":"https://x/2","b/c~":["https://x/3"]}"#,
            #"{"e\u0301":"https://x/2","\u00e9":5,"z":"https://x/4"}"#,
            #"{"k":{"b":"http://x/b","a":"HTTP://x/a"},"j":["https:\/\/x\/5","\u0068ttps://x/6"]}"#,
        ]
        for text in cases {
            let tree = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
            #expect(Self.exact(OutputURLWalker.urls(inJSON: text)) == Self.exact(OutputURLWalker.urls(in: tree)), "\(text)")
        }
        #expect(OutputURLWalker.urls(inJSON: cases[2]).map { Array($0.pointer.utf8) } == [Array("/b~1c~0/0".utf8), Array("/\u{e9}".utf8)])
    }

    // MARK: - Refusals

    static let refusedBodies: [(String, [UInt8])] = {
        let valid = #"{"id":"p1","status":"succeeded","output":["https://x.example/1"]}"#
        func body(_ text: String) -> [UInt8] { Array(text.utf8) }
        func withValue(_ value: String) -> [UInt8] { body(#"{"id":"p1","status":"succeeded","output":"# + value + "}") }
        return [
            ("invalid escape \\x", withValue(#""\x""#)),
            ("invalid escape \\a", withValue(#""a\ab""#)),
            ("short \\u", withValue(#""\u12""#)),
            ("non-hex \\u", withValue(#""\u12g4""#)),
            ("lone high surrogate", withValue(#""\ud800""#)),
            ("high surrogate then a letter", withValue(#""\ud800\u0041""#)),
            ("lone low surrogate", withValue(#""\udc00x""#)),
            ("escape in a key", body(#"{"i\d":"p1","status":"succeeded"}"#)),
            ("leading zero", withValue("01")),
            ("negative leading zero", withValue("-01")),
            ("leading zeros in an array", withValue("[1,00]")),
            ("bare minus", withValue("-")),
            ("dot without digits", withValue("1.")),
            ("plus sign", withValue("+1")),
            ("invalid UTF-8 byte", body(#"{"id":"p1","status":"succeeded","output":""#) + [0xFF] + body(#""}"#)),
            ("overlong UTF-8", body(#"{"id":"p1","status":"succeeded","output":""#) + [0xC0, 0x80] + body(#""}"#)),
            ("UTF-8 surrogate", body(#"{"id":"p1","status":"succeeded","output":""#) + [0xED, 0xA0, 0x80] + body(#""}"#)),
            ("UTF-8 past U+10FFFF", body(#"{"id":"p1","status":"succeeded","output":""#) + [0xF4, 0x90, 0x80, 0x80] + body(#""}"#)),
            ("truncated UTF-8 in an unknown member", body(#"{"id":"p1","status":"succeeded","x":""#) + [0xE2, 0x82] + body(#""}"#)),
            ("raw control character", withValue("\"a\u{01}b\"")),
            ("trailing garbage", body(valid + " x")),
            ("second object", body(valid + "{}")),
            ("trailing NUL", body(valid) + [0]),
            ("array at the top", body("[]")),
            ("number at the top", body("5")),
            ("string at the top", body(#""x""#)),
            ("null at the top", body("null")),
            ("empty body", []),
            ("only whitespace", body(" \n")),
            ("single quotes", body("{'id':'p1'}")),
            ("id not a string", body(#"{"id":5,"status":"starting"}"#)),
            ("empty id", body(#"{"id":"","status":"starting"}"#)),
            ("id of 257 bytes", body(#"{"id":""# + String(repeating: "a", count: 257) + #"","status":"starting"}"#)),
            ("id of 129 bytes", body(#"{"id":""# + String(repeating: "a", count: 129) + #"","status":"starting"}"#)),
            ("id \".\"", body(#"{"id":".","status":"succeeded"}"#)),
            ("id \"..\"", body(#"{"id":"..","status":"succeeded"}"#)),
            ("id with a slash", body(#"{"id":"../../stability/x","status":"succeeded"}"#)),
            ("id with an escaped slash", body(#"{"id":"a\/b","status":"succeeded"}"#)),
            ("id with a backslash", body(#"{"id":"a\\b","status":"succeeded"}"#)),
            ("id with a NUL", body(#"{"id":"a\u0000b","status":"succeeded"}"#)),
            ("id with a line break", body(#"{"id":"a\nb","status":"succeeded"}"#)),
            ("id with DEL", body(#"{"id":"a\u007fb","status":"succeeded"}"#)),
            ("id with a C1 control", body(#"{"id":"a\u0085b","status":"succeeded"}"#)),
            ("unknown status", body(#"{"id":"p1","status":"exploded"}"#)),
            ("status not a string", body(#"{"id":"p1","status":true}"#)),
            ("completed_at not a timestamp", body(#"{"id":"p1","status":"succeeded","completed_at":"yesterday"}"#)),
            ("created_at a number", body(#"{"id":"p1","status":"succeeded","created_at":1732100000}"#)),
        ]
    }()

    @Test func refusesWhatTheReferenceRefused() {
        for (label, body) in Self.refusedBodies {
            #expect(throws: ReplicatePrediction.ParseError.self, "\(label)") { try ReplicatePrediction.parse(body) }
            #expect(throws: ReferenceError.self, "reference: \(label)") { try Self.referenceParse(body) }
            Self.expectSameAnswer(body, label)
        }
    }

    @Test func everyTruncationIsRefused() throws {
        for (name, body) in try Self.fixtures() {
            let end = body.lastIndex(of: UInt8(ascii: "}"))!
            for length in 0...end {
                let prefix = Array(body[..<length])
                #expect(throws: ReplicatePrediction.ParseError.self, "\(name) cut at \(length)") { try ReplicatePrediction.parse(prefix) }
            }
        }
    }

    @Test func idLimitCountsUnescapedBytes() throws {
        // 128 bytes written with escapes is a valid id; 129 is not.
        let escaped = String(repeating: #"\u0061"#, count: 128)
        let ok = try ReplicatePrediction.parse(Array((#"{"id":""# + escaped + #"","status":"starting"}"#).utf8))
        #expect(ok.id == String(repeating: "a", count: 128))
        #expect(throws: ReplicatePrediction.ParseError.self) {
            try ReplicatePrediction.parse(Array((#"{"id":""# + escaped + #"a","status":"starting"}"#).utf8))
        }
    }

    /// The one refusal that is new: nesting beyond the scanner's depth limit (JSONSerialization allowed
    /// ~500 levels). Such a webhook now gets a 400 and is kept raw.
    @Test func nestingBeyondTheDepthLimitIsRefused() throws {
        func body(depth: Int) -> [UInt8] {
            Array(
                (#"{"id":"p1","status":"succeeded","input":"# + String(repeating: "[", count: depth)
                    + String(repeating: "]", count: depth) + "}").utf8)
        }
        #expect(try ReplicatePrediction.parse(body(depth: JSONByteScanner.maxDepth - 1)).inputJSON != nil)
        #expect(throws: ReplicatePrediction.ParseError.self) { try ReplicatePrediction.parse(body(depth: JSONByteScanner.maxDepth)) }
        #expect(throws: Never.self) { try Self.referenceParse(body(depth: JSONByteScanner.maxDepth)) }
    }

    @Test func errorValuesThatAreNotStringsKeepTheirJSONText() throws {
        let p = try ReplicatePrediction.parse(Array(#"{"id":"p1","status":"failed","error":{"b":1,"a":[true,null]}}"#.utf8))
        #expect(p.error == #"{"b":1,"a":[true,null]}"#)
        let s = try ReplicatePrediction.parse(Array(#"{"id":"p1","status":"failed","error":"a \"quoted\" \u00e9"}"#.utf8))
        #expect(s.error == "a \"quoted\" \u{e9}")
    }

    // MARK: - Scanner pieces

    @Test func utf8CheckAgreesWithTheStandardLibrary() {
        var rng = SplitMix64(seed: 7)
        // Bytes biased towards the edges of the UTF-8 lead and continuation ranges.
        let interesting: [UInt8] = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
            0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ]
        var invalid = 0
        for _ in 0..<5000 {
            let count = Int(rng.next() % 24)
            var bytes: [UInt8] = []
            for _ in 0..<count {
                bytes.append(rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : interesting[Int(rng.next() % UInt64(interesting.count))])
            }
            if rng.next() % 2 == 0 { bytes = Array(repeating: UInt8(ascii: "a"), count: Int(rng.next() % 17)) + bytes }
            let expected = String(validating: bytes, as: UTF8.self) != nil
            if !expected { invalid += 1 }
            #expect(bytes.withUnsafeBufferPointer(JSONByteScanner.isValidUTF8) == expected, "\(bytes)")
        }
        #expect(invalid > 500)
        #expect(Array("ascii only, long enough for words: 0123456789".utf8).withUnsafeBufferPointer(JSONByteScanner.isValidUTF8))
        #expect(Array("é日本😀".utf8).withUnsafeBufferPointer(JSONByteScanner.isValidUTF8))
    }

    @Test func numbersFollowTheGrammar() {
        func accepts(_ text: String) -> Bool {
            Array(text.utf8).withUnsafeBufferPointer { buffer in
                var scanner = JSONByteScanner(buffer)
                do throws(JSONByteScanner.Failure) {
                    try scanner.skipValue()
                    try scanner.expectEnd()
                    return true
                } catch { return false }
            }
        }
        for good in ["0", "-0", "0.5", "-0.5e-3", "10", "1e5", "0e1", "1E+2", "120.010"] { #expect(accepts(good), "\(good)") }
        for bad in ["01", "-01", "00", "00.5", "-", "1.", ".5", "+1", "1e", "0x1", "1.e2"] { #expect(!accepts(bad), "\(bad)") }
    }

    @Test func unescapingMatchesJSONSerialization() throws {
        var generator = BodyGenerator(seed: 99)
        for _ in 0..<500 {
            let literal = generator.string(urlBias: false)
            let expected = try #require(try JSONSerialization.jsonObject(with: Data(literal.utf8), options: .fragmentsAllowed) as? String)
            let actual = Array(literal.utf8).withUnsafeBufferPointer { buffer -> String? in
                var scanner = JSONByteScanner(buffer)
                guard let span = try? scanner.scanString() else { return nil }
                return scanner.string(span, limit: .max)
            }
            #expect(actual == expected, "\(literal)")
            // Canonically equal is not enough: the scalars must be the same.
            #expect(actual.map { Array($0.unicodeScalars) } == Array(expected.unicodeScalars), "\(literal)")
        }
    }
}

/// Webhook-shaped bodies as JSON text, with the awkward parts: escaped keys (`~`, `/`, `\u`), unicode,
/// duplicates, nulls, numbers, nested outputs full of URLs, and now and then a field that makes it a refusal.
struct BodyGenerator {
    var rng: SplitMix64
    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    static let urls = [
        #""https://replicate.delivery/xezq/abc/out-0.png""#, #""http://x.example/a""#, #""HTTPS://X.EXAMPLE/b""#,
        #""https:\/\/replicate.delivery\/esc\/1.webp""#, #""\u0068ttps://u.example/2""#, #""https://\u00e9.example/3""#,
        #""https://x.example/caf\u00e9.png""#, #""https://x.example/😀.png""#, #""Http://mixed.Example/4""#,
    ]
    static let nonURLs = [
        #""https://""#, #""http:/x""#, #""https:///path""#, #""ftp://x/1""#, #""data:image/png;base64,AAA""#,
        #""https://a b""#, #""https://a\tb""#, #""https://x\u00a0y""#, #"" https://x""#, #""a caption""#, #""""#,
        #""https://x\u2003""#, #""http""#,
    ]
    static let pieces = [
        "plain", "caf\u{e9}", "日本", "😀", "e\u{301}", "~", "/", "~1", #"\n"#, #"\""#, #"\\"#, #"\/"#, #"\t"#, #"\b"#,
        #"\f"#, #"\r"#, #"\u00e9"#, #"\u0041"#, #"\ud83d\ude00"#, #"\u0000"#, #"\u001f"#, #"\u2028"#, "\u{7F}", " ", "a/b",
    ]
    static let keys = [
        "a", "b", "image", "masks", "a/b", "t~", "~0", "x/~y", "\u{e9}", "e\u{301}", "日本", "",
        #"\u0061"#, #"k\/s"#, #"\u007e"#, "z", "A", "_",
    ]
    static let numbers = ["0", "-0", "1", "-17", "3.25", "1e3", "-2.5E-4", "0.001", "123456789", "9007199254740993", "1E+2"]

    mutating func string(urlBias: Bool) -> String {
        if urlBias, rng.chance(60) { return rng.pick(Self.urls) }
        if rng.chance(20) { return rng.pick(Self.nonURLs) }
        var text = "\""
        for _ in 0..<rng.below(5) { text += rng.pick(Self.pieces) }
        return text + "\""
    }

    mutating func key() -> String { "\"" + rng.pick(Self.keys) + "\"" }

    mutating func value(depth: Int, urlBias: Bool) -> String {
        let roll = rng.below(100)
        if depth < 4, roll < 20 {
            let count = rng.below(5)
            return "[" + (0..<count).map { _ in value(depth: depth + 1, urlBias: urlBias) }.joined(separator: rng.chance(20) ? " , " : ",") + "]"
        }
        if depth < 4, roll < 40 {
            let count = rng.below(5)
            return "{"
                + (0..<count).map { _ in key() + (rng.chance(20) ? " : " : ":") + value(depth: depth + 1, urlBias: urlBias) }
                .joined(separator: ",") + "}"
        }
        switch roll {
        case ..<70: return string(urlBias: urlBias)
        case ..<82: return rng.pick(Self.numbers)
        case ..<88: return "true"
        case ..<94: return "false"
        default: return "null"
        }
    }

    mutating func timestamp() -> String {
        switch rng.below(100) {
        case ..<70: return "\"2026-11-2\(rng.below(10))T1\(rng.below(10)):0\(rng.below(10)):\(10 + rng.below(50)).\(rng.below(1000))Z\""
        case ..<80: return "\"2026-11-20T12:00:00+02:00\""
        case ..<95: return "null"
        case ..<97: return "\"yesterday\""
        default: return "12"
        }
    }

    /// One webhook body; members in random order, some repeated (the later one wins in both parses).
    mutating func body() -> String {
        var members: [(String, String)] = []
        let id: String
        switch rng.below(100) {
        case ..<80: id = "\"p\(rng.next() % 1_000_000)\""
        case ..<88: id = #""p\u0031\/x~""#
        case ..<91: id = "5"
        case ..<93: id = #""""#
        case ..<95: id = "\"" + String(repeating: "a", count: 257) + "\""
        default: id = "\"\u{e9}\u{65}\u{301}\(rng.below(100))\""
        }
        if rng.chance(98) { members.append(("\"id\"", id)) }
        let statuses = ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
        let status = rng.chance(95) ? "\"\(rng.pick(statuses))\"" : rng.pick([#""exploded""#, "null", #""Succeeded""#])
        members.append((rng.chance(10) ? #""st\u0061tus""# : "\"status\"", status))
        for (name, chance) in [("model", 80), ("version", 70)] where rng.chance(chance) {
            members.append(("\"\(name)\"", rng.chance(85) ? string(urlBias: false) : rng.pick(["null", "3", "true"])))
        }
        if rng.chance(80) { members.append(("\"input\"", value(depth: 1, urlBias: false))) }
        if rng.chance(90) {
            // Mostly Replicate's usual shapes (a list of URLs, one URL), the rest anything.
            let output: String
            switch rng.below(100) {
            case ..<30: output = "[" + (0..<(1 + rng.below(4))).map { _ in string(urlBias: true) }.joined(separator: ",") + "]"
            case ..<45: output = string(urlBias: true)
            case ..<55: output = "null"
            default: output = value(depth: 1, urlBias: true)
            }
            members.append((rng.chance(10) ? #""\u006futput""# : "\"output\"", output))
        }
        if rng.chance(70) { members.append(("\"metrics\"", rng.chance(80) ? #"{"predict_time":\#(rng.pick(Self.numbers))}"# : "null")) }
        if rng.chance(70) {
            let error = rng.pick([
                "null", "null", "null", #""CUDA out of memory""#, #""line\nbreak \u00e9""#, "42", #"{"b":1,"a":"x"}"#, #"["e",{"z":null,"y":2.5}]"#,
                "true",
            ])
            members.append(("\"error\"", error))
        }
        for name in ["created_at", "started_at", "completed_at"] where rng.chance(75) {
            members.append(("\"\(name)\"", timestamp()))
        }
        if rng.chance(70) { members.append(("\"data_removed\"", rng.pick(["false", "false", "false", "true", "null", #""true""#]))) }
        if rng.chance(50) { members.append((key(), value(depth: 1, urlBias: true))) }
        if rng.chance(40) { members.append(("\"urls\"", #"{"get":"https://api.replicate.com/v1/predictions/x"}"#)) }
        // Duplicates of known keys: the later wins.
        if rng.chance(15) { members.append(("\"output\"", value(depth: 1, urlBias: true))) }
        if rng.chance(5) { members.append(("\"status\"", "\"\(rng.pick(statuses))\"")) }
        if rng.chance(5) { members.append(("\"data_removed\"", rng.pick(["true", "false"]))) }
        // Shuffle (Fisher–Yates with the seeded generator).
        if members.count > 1 {
            for i in stride(from: members.count - 1, to: 0, by: -1) { members.swapAt(i, rng.below(i + 1)) }
        }
        let separator = rng.chance(30) ? ",\n  " : ","
        let body = "{" + members.map { "\($0.0):\($0.1)" }.joined(separator: separator) + "}"
        return rng.chance(20) ? "  " + body + "\n" : body
    }
}
