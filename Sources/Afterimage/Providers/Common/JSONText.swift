/// A JSON value from a body, kept as text for a jsonb column (`predictions.input`/`output`): as the
/// provider wrote it, less NUL escapes (which jsonb cannot hold; the raw delivery keeps them) and less the
/// payloads of data: URIs (each kept as its header, `"data:image/png;base64,"`: the bytes are in the
/// delivery and, once archived, in the bucket, and a second copy in the row would double a large body).
enum JSONText {
    static func kept(_ range: Range<Int>, of body: UnsafeBufferPointer<UInt8>, elidingData found: [OutputURLWalker.Found] = []) -> String {
        let data = found.compactMap { found in found.dataSpan.map { (span: $0, header: found.url) } }
        if data.isEmpty {
            let raw = UnsafeBufferPointer(rebasing: body[range])
            return String(decoding: JSONByteScanner.removingNULEscapes(raw) ?? Array(raw), as: UTF8.self)
        }
        var elided: [UInt8] = []
        var from = range.lowerBound
        for (span, header) in data.sorted(by: { $0.span.range.lowerBound < $1.span.range.lowerBound }) {
            elided.append(contentsOf: body[from..<span.range.lowerBound])
            elided.append(contentsOf: header.utf8)
            elided.append(UInt8(ascii: ","))
            from = span.range.upperBound
        }
        elided.append(contentsOf: body[from..<range.upperBound])
        let clean = elided.withUnsafeBufferPointer { JSONByteScanner.removingNULEscapes($0) } ?? elided
        return String(decoding: clean, as: UTF8.self)
    }

    /// A member's value as text for people (an `error`): a string as itself, anything else as its JSON.
    static func text(_ range: Range<Int>, string: JSONByteScanner.StringSpan?, in scanner: JSONByteScanner, limit: Int = 64 << 10) -> String? {
        if let string { return scanner.string(string, limit: limit).map { $0.replacingOccurrences(of: "\0", with: "") } }
        if scanner.bytes[range.lowerBound] == UInt8(ascii: "n") { return nil }  // null
        return kept(range.lowerBound..<min(range.upperBound, range.lowerBound + limit), of: scanner.bytes)
    }
}
