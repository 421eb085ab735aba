import Foundation

/// What an app forwarded from Stability AI, located in the raw body without copying its base64 fields.
///
/// Three forms: an inline v1 answer (`{"artifacts": [{"base64", "seed", "finishReason"}]}`), an inline
/// v2beta answer (`{"image"|"video"|"audio"|"result": base64, "finish_reason", "seed"}` — `result` is how
/// `GET /v2beta/results/{id}` answers with `Accept: application/json`), or the id of an async generation
/// (`{"id": …}`, e.g. the 202 body `{"id", "status": "in-progress"}`) that Afterimage fetches itself;
/// `"kind": "audio"` says it is a Stable Audio generation, fetched from its own endpoint. `prediction_id`
/// (the app's own id) may ride along in any of them.
struct StabilityBody {
    struct ParseError: Error, CustomStringConvertible, Equatable {
        let message: String
        var description: String { message }
    }

    /// One output carried in the body.
    struct Artifact {
        /// JSON pointer of the base64 field's owner, e.g. `/artifacts/0` or `/video`.
        let pointer: String
        /// `image`, `video` or `audio` for v2beta (a `result` field takes the body's `kind`); nil for v1
        /// (always images).
        let kind: String?
        let base64: JSONByteScanner.StringSpan
        let seed: Int64?
        let finishReason: String?
    }

    var artifacts: [Artifact] = []
    /// The async generation to fetch, when the body is a reference.
    var generationID: String?
    /// The app's own id for this result, when it sent one.
    var predictionID: String?
    /// Which results endpoint the generation lives at (`"kind"`, default image).
    var kind: StabilityGenerationKind = .image

    var isReference: Bool { artifacts.isEmpty && generationID != nil }

    /// Stability's v1 API returns at most 10 samples; more than this is not a Stability answer.
    static let maxArtifacts = 16

    /// Ids become part of object keys: a conservative alphabet and length keep keys sane.
    static func isSafeID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && !id.hasPrefix(".")
            && id.utf8.allSatisfy {
                $0 < 0x80
                    && (Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber || $0 == UInt8(ascii: "-")
                        || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "."))
            }
    }

    /// Locates the fields in `body`; the spans refer to `body`'s bytes.
    static func parse(_ body: UnsafeBufferPointer<UInt8>) throws(ParseError) -> StabilityBody {
        var scanner = JSONByteScanner(body)
        var result = StabilityBody()
        var topSeed: Int64?
        var topFinish: String?
        var inline: [(String, JSONByteScanner.StringSpan)] = []
        var kindText: String?
        do {
            guard scanner.peek() == UInt8(ascii: "{") else { throw scanner.failure("the body is not a JSON object") }
            try scanner.forEachMember { (s: inout JSONByteScanner, key) throws(JSONByteScanner.Failure) in
                if s.span(key, equals: "artifacts") {
                    guard s.peek() == UInt8(ascii: "[") else { throw s.failure("artifacts is not an array") }
                    try s.forEachElement(depth: 1) { (s: inout JSONByteScanner, index) throws(JSONByteScanner.Failure) in
                        guard index < maxArtifacts else { throw s.failure("more than \(maxArtifacts) artifacts") }
                        if let artifact = try parseArtifact(&s, pointer: "/artifacts/\(index)") { result.artifacts.append(artifact) }
                    }
                } else if s.span(key, equals: "image") || s.span(key, equals: "video") || s.span(key, equals: "audio")
                    || s.span(key, equals: "result")
                {
                    let name = s.string(key) ?? ""
                    guard s.peek() == UInt8(ascii: "\"") else { throw s.failure("\(name) is not a base64 string") }
                    inline.append((name, try s.scanString()))
                } else if s.span(key, equals: "seed") {
                    topSeed = try scanSeed(&s)
                } else if s.span(key, equals: "finish_reason") || s.span(key, equals: "finishReason") {
                    topFinish = try scanShortString(&s, name: "finish_reason")
                } else if s.span(key, equals: "id") {
                    result.generationID = try scanShortString(&s, name: "id")
                } else if s.span(key, equals: "prediction_id") {
                    result.predictionID = try scanShortString(&s, name: "prediction_id")
                } else if s.span(key, equals: "kind") {
                    kindText = try scanShortString(&s, name: "kind")
                } else {
                    try s.skipValue(depth: 1)
                }
            }
            try scanner.expectEnd()
        } catch {
            throw ParseError(message: "not valid JSON: \(error)")
        }
        if !result.artifacts.isEmpty, !inline.isEmpty {
            throw ParseError(message: "both v1 artifacts and a v2beta \(inline[0].0) field")
        }
        if let kindText {
            guard let kind = StabilityGenerationKind(rawValue: kindText) else {
                throw ParseError(message: "kind must be \"image\" or \"audio\"")
            }
            result.kind = kind
        }
        for (name, span) in inline {
            // `result` does not say what it holds; the body's kind does (it matters for sniffing mp4/webm).
            let kind = name == "result" ? result.kind.rawValue : name
            result.artifacts.append(Artifact(pointer: "/\(name)", kind: kind, base64: span, seed: topSeed, finishReason: topFinish))
        }
        if let id = result.predictionID, !isSafeID(id) {
            throw ParseError(message: "prediction_id must be 1 to 128 letters, digits, '-', '_' or '.'")
        }
        // The generation id names the result (and so its object keys) whenever there is no prediction_id,
        // inline bytes or not: checked either way.
        if let id = result.generationID, !isSafeID(id) {
            throw ParseError(message: "id must be 1 to 128 letters, digits, '-', '_' or '.'")
        }
        if result.artifacts.isEmpty, result.generationID == nil {
            throw ParseError(message: "no artifacts, image, video, audio, result or id: not a Stability result")
        }
        return result
    }

    /// One v1 artifact; nil when it carries no bytes (an `ERROR` artifact has none to keep).
    private static func parseArtifact(_ s: inout JSONByteScanner, pointer: String) throws(JSONByteScanner.Failure) -> Artifact? {
        var base64: JSONByteScanner.StringSpan?
        var seed: Int64?
        var finish: String?
        guard s.peek() == UInt8(ascii: "{") else { throw s.failure("\(pointer) is not an object") }
        try s.forEachMember(depth: 2) { (s: inout JSONByteScanner, key) throws(JSONByteScanner.Failure) in
            if s.span(key, equals: "base64") {
                guard s.peek() == UInt8(ascii: "\"") else { throw s.failure("\(pointer)/base64 is not a string") }
                base64 = try s.scanString()
            } else if s.span(key, equals: "seed") {
                seed = try scanSeed(&s)
            } else if s.span(key, equals: "finishReason") || s.span(key, equals: "finish_reason") {
                finish = try scanShortString(&s, name: "finishReason")
            } else {
                try s.skipValue(depth: 3)
            }
        }
        guard let base64 else { return nil }
        return Artifact(pointer: pointer, kind: nil, base64: base64, seed: seed, finishReason: finish)
    }

    /// A seed as a number or a string of digits; nil for null. Stability's seeds are below 2^32.
    private static func scanSeed(_ s: inout JSONByteScanner) throws(JSONByteScanner.Failure) -> Int64? {
        switch s.peek() {
        case UInt8(ascii: "n"):
            try s.skipValue()
            return nil
        case UInt8(ascii: "\""):
            let span = try s.scanString()
            guard let text = s.string(span, limit: 24), let value = Int64(text) else { throw s.failure("seed is not an integer") }
            return value
        default:
            let range = try s.scanNumber()
            guard range.count <= 20, let value = Int64(String(decoding: UnsafeBufferPointer(rebasing: s.bytes[range]), as: UTF8.self)) else {
                throw s.failure("seed is not an integer")
            }
            return value
        }
    }

    private static func scanShortString(_ s: inout JSONByteScanner, name: String) throws(JSONByteScanner.Failure) -> String? {
        if s.peek() == UInt8(ascii: "n") {
            try s.skipValue()
            return nil
        }
        guard s.peek() == UInt8(ascii: "\"") else { throw s.failure("\(name) is not a string") }
        let span = try s.scanString()
        guard let value = s.string(span, limit: 256) else { throw s.failure("\(name) is longer than 256 bytes") }
        return value
    }
}

/// Where an async generation's result is fetched: Stable Audio generations have their own endpoint, and a
/// result can only be read at the endpoint of its kind.
enum StabilityGenerationKind: String, Sendable {
    case image, audio

    /// Path of the results endpoint, to which the generation id is appended.
    var resultsPath: String { self == .audio ? "/v2beta/audio/results/" : "/v2beta/results/" }

    /// The `Accept` header of a poll. Bytes, not JSON: they stream to the spool as they are, with
    /// `finish-reason` and `seed` as headers (a JSON answer is decoded all the same). `*/*` is what
    /// Stability's own ComfyUI nodes send for image results; audio results are asked for as `audio/*`.
    var accept: String { self == .audio ? "audio/*" : "*/*" }

    /// The kind of a results URL built by `StabilityIntake` (`source_url` keeps it).
    init(resultsURL: String) {
        self = resultsURL.contains(StabilityGenerationKind.audio.resultsPath) ? .audio : .image
    }
}

/// The media type of decoded bytes from their first bytes: the v2beta field says image/video/audio but
/// not which format, and the object key's extension comes from the type.
enum MediaSniffer {
    static func contentType(head: [UInt8], kind: String?) -> String {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            head.count >= offset + prefix.count && Array(head[offset..<(offset + prefix.count)]) == prefix
        }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "image/png" }
        if starts([0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if starts(Array("RIFF".utf8)), starts(Array("WEBP".utf8), at: 8) { return "image/webp" }
        if starts(Array("RIFF".utf8)), starts(Array("WAVE".utf8), at: 8) { return "audio/wav" }
        if starts(Array("GIF8".utf8)) { return "image/gif" }
        if starts(Array("ftyp".utf8), at: 4) { return kind == "audio" ? "audio/mp4" : "video/mp4" }
        if starts([0x1A, 0x45, 0xDF, 0xA3]) { return kind == "audio" ? "audio/webm" : "video/webm" }
        if starts(Array("fLaC".utf8)) { return "audio/flac" }
        if starts(Array("OggS".utf8)) { return "audio/ogg" }
        if starts(Array("ID3".utf8)) || (head.count >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) { return "audio/mpeg" }
        return "application/octet-stream"
    }
}
