import Foundation

/// What Ideogram delivers when an asynchronous generation finishes: the synchronous answer's shape plus
/// the generation id, `{"generation_id" (or "request_id"), "created", "data": [{"url", "prompt",
/// "resolution", "seed", "is_image_safe"}]}` (https://developer.ideogram.ai/ideogram-api/webhooks). An image
/// withheld by the safety check has `is_image_safe: false` and no URL (empty or null): it is recorded, not
/// archived. Located in the body with the byte scanner, like every provider's.
struct IdeogramBody {
    struct Image {
        let index: Int
        /// Nil or not an http(s) URL: nothing to archive.
        let url: String?
        let seed: Int64?
    }

    var generationID: String?
    var created: Date?
    /// Where the `data` array lies in the body (kept as the prediction's output).
    var data: Range<Int>?
    var images: [Image] = []
    /// A failure the body reports (`error`), should Ideogram deliver one.
    var error: String?

    static func parse(_ body: UnsafeBufferPointer<UInt8>) throws(UnreadableDelivery) -> IdeogramBody {
        guard JSONByteScanner.isValidUTF8(body) else { throw UnreadableDelivery("the body is not valid JSON") }
        var scanner = JSONByteScanner(body)
        var result = IdeogramBody()
        do throws(JSONByteScanner.Failure) {
            guard scanner.peek() == UInt8(ascii: "{") else { throw scanner.failure("the body is not a JSON object") }
            try scanner.forEachMember { (s: inout JSONByteScanner, key) throws(JSONByteScanner.Failure) in
                if s.span(key, equals: "generation_id") || (s.span(key, equals: "request_id") && result.generationID == nil) {
                    guard s.peek() == UInt8(ascii: "\"") else { throw s.failure("generation_id is not a string") }
                    result.generationID = s.string(try s.scanString(), limit: 6 * PredictionID.maxBytes)
                } else if s.span(key, equals: "created") {
                    result.created = try Self.date(&s)
                } else if s.span(key, equals: "data") {
                    _ = s.peek()
                    let start = s.offset
                    guard s.peek() == UInt8(ascii: "[") else { throw s.failure("data is not an array") }
                    try s.forEachElement(depth: 1) { (s: inout JSONByteScanner, index) throws(JSONByteScanner.Failure) in
                        result.images.append(try Self.image(&s, index: index))
                    }
                    result.data = start..<s.offset
                } else if s.span(key, equals: "error") {
                    _ = s.peek()
                    let start = s.offset
                    let span = s.peek() == UInt8(ascii: "\"") ? try s.scanString() : nil
                    if span == nil { try s.skipValue(depth: 1) }
                    result.error = JSONText.text(start..<s.offset, string: span, in: s)
                } else {
                    try s.skipValue(depth: 1)
                }
            }
            try scanner.expectEnd()
        } catch {
            throw UnreadableDelivery("not an Ideogram generation: \(error)")
        }
        return result
    }

    private static func image(_ s: inout JSONByteScanner, index: Int) throws(JSONByteScanner.Failure) -> Image {
        var url: String?
        var seed: Int64?
        guard s.peek() == UInt8(ascii: "{") else { throw s.failure("data/\(index) is not an object") }
        try s.forEachMember(depth: 2) { (s: inout JSONByteScanner, key) throws(JSONByteScanner.Failure) in
            if s.span(key, equals: "url"), s.peek() == UInt8(ascii: "\"") {
                let text = s.string(try s.scanString(), limit: 64 << 10)
                url = text.flatMap { OutputURLWalker.isFetchableURL($0) ? $0 : nil }
            } else if s.span(key, equals: "seed"), let first = s.peek(), first == UInt8(ascii: "-") || (first >= 0x30 && first <= 0x39) {
                let range = try s.scanNumber()
                seed = Int64(String(decoding: UnsafeBufferPointer(rebasing: s.bytes[range]), as: UTF8.self))
            } else {
                try s.skipValue(depth: 3)
            }
        }
        return Image(index: index, url: url, seed: seed)
    }

    /// RFC 3339 text (what Ideogram sends), or Unix seconds; nil for anything else.
    private static func date(_ s: inout JSONByteScanner) throws(JSONByteScanner.Failure) -> Date? {
        switch s.peek() {
        case UInt8(ascii: "\""):
            return s.string(try s.scanString(), limit: 64).flatMap { Date(rfc3339: $0) }
        case let byte? where byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39):
            let range = try s.scanNumber()
            return Double(String(decoding: UnsafeBufferPointer(rebasing: s.bytes[range]), as: UTF8.self))
                .map { Date(timeIntervalSince1970: $0) }
        default:
            try s.skipValue(depth: 1)
            return nil
        }
    }
}
