import Foundation

/// What fal delivers when a queued request finishes (https://docs.fal.ai/model-apis/model-endpoints/webhooks):
/// `{"request_id", "gateway_request_id", "status": "OK" | "ERROR", "payload": {…} | null, "error"?,
/// "payload_error"?}`. The payload is the model's own answer, and models differ (`images[*].url`,
/// `video.url`, `audio_file.url`, …): every http(s) URL anywhere in it is an output, walked like
/// Replicate's `output`.
struct FalBody {
    var requestID: String?
    var status: String?
    /// Where `payload` lies in the body (kept as the prediction's output), and the outputs found in it.
    var payload: Range<Int>?
    var outputs: [OutputURLWalker.Found] = []
    var error: String?
    var payloadError: String?

    static func parse(_ body: UnsafeBufferPointer<UInt8>) throws(UnreadableDelivery) -> FalBody {
        guard JSONByteScanner.isValidUTF8(body) else { throw UnreadableDelivery("the body is not valid JSON") }
        var scanner = JSONByteScanner(body)
        var result = FalBody()
        do throws(JSONByteScanner.Failure) {
            guard scanner.peek() == UInt8(ascii: "{") else { throw scanner.failure("the body is not a JSON object") }
            try scanner.forEachMember { (s: inout JSONByteScanner, key) throws(JSONByteScanner.Failure) in
                if s.span(key, equals: "request_id"), s.peek() == UInt8(ascii: "\"") {
                    result.requestID = s.string(try s.scanString(), limit: 6 * PredictionID.maxBytes)
                } else if s.span(key, equals: "status"), s.peek() == UInt8(ascii: "\"") {
                    result.status = s.string(try s.scanString(), limit: 64)
                } else if s.span(key, equals: "payload") {
                    _ = s.peek()
                    let start = s.offset
                    if s.peek() == UInt8(ascii: "n") {
                        try s.skipValue(depth: 1)
                    } else {
                        result.outputs = try OutputURLWalker.walk(&s, depth: 1)
                        result.payload = start..<s.offset
                    }
                } else if s.span(key, equals: "error") || s.span(key, equals: "payload_error") {
                    let isError = s.span(key, equals: "error")
                    _ = s.peek()
                    let start = s.offset
                    let span = s.peek() == UInt8(ascii: "\"") ? try s.scanString() : nil
                    if span == nil { try s.skipValue(depth: 1) }
                    let text = JSONText.text(start..<s.offset, string: span, in: s)
                    if isError { result.error = text } else { result.payloadError = text }
                } else {
                    try s.skipValue(depth: 1)
                }
            }
            try scanner.expectEnd()
        } catch {
            throw UnreadableDelivery("not a fal result: \(error)")
        }
        return result
    }
}
