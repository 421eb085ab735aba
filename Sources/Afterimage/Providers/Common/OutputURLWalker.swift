import Foundation

/// Finds every output file anywhere in a prediction's `output` (a string, a list, nested objects): each
/// http(s) URL and each `data:` URI, with its JSON pointer (RFC 6901), in a stable walk order: the pointer
/// is the asset's identity, so the same output always yields the same assets and a repeated webhook never
/// makes a second copy. URLs and data: URIs share one numbering (the `n` of the storage key).
public enum OutputURLWalker {
    public struct Found: Sendable, Equatable {
        public let pointer: String
        /// The http(s) URL to download; for a `data:` output, the URI's header without its payload
        /// (`data:image/png;base64`), which is also what the stored output keeps of it.
        public let url: String
        /// For a data: output found in a body's bytes: where its JSON string lies in them, to decode it from.
        let dataSpan: JSONByteScanner.StringSpan?

        public init(pointer: String, url: String) {
            self.init(pointer: pointer, url: url, dataSpan: nil)
        }

        init(pointer: String, url: String, dataSpan: JSONByteScanner.StringSpan?) {
            self.pointer = pointer
            self.url = url
            self.dataSpan = dataSpan
        }

        /// A data: output (decoded from the body), not a URL to download.
        public var isData: Bool { url.utf8.starts(with: "data:".utf8) }

        /// The same output: where it is and what it is, wherever it was found.
        public static func == (lhs: Found, rhs: Found) -> Bool { lhs.pointer == rhs.pointer && lhs.url == rhs.url }
    }

    /// Object keys are visited in sorted order so the walk order (and so each output's index `n` in the
    /// storage key) does not depend on how the provider ordered its JSON.
    public static func urls(in output: Any?) -> [Found] {
        var found: [Found] = []
        walk(output, pointer: "", into: &found)
        return found
    }

    /// The same walk over `output`'s JSON text, as stored for a prediction; empty when it is not JSON
    /// the scanner can walk (then there is nothing to archive, as before).
    public static func urls(inJSON output: String) -> [Found] {
        var output = output
        return output.withUTF8 { bytes in
            var scanner = JSONByteScanner(bytes)
            do throws(JSONByteScanner.Failure) {
                let found = try walk(&scanner, depth: 0)
                try scanner.expectEnd()
                return found
            } catch {
                return []
            }
        }
    }

    /// Walks the JSON value at the scanner's position, consuming it, and returns its URLs with pointers
    /// relative to it: the same answer as `urls(in:)` on the parsed value, without building the tree.
    /// The bytes must already be known to be UTF-8 (a Swift string, or a body checked with
    /// `JSONByteScanner.isValidUTF8`); structure and escapes are checked here.
    static func walk(_ scanner: inout JSONByteScanner, depth: Int) throws(JSONByteScanner.Failure) -> [Found] {
        switch scanner.peek() {
        case UInt8(ascii: "\""):
            let span = try scanner.scanString()
            if let header = dataHeader(span, in: scanner) { return [Found(pointer: "", url: header.text, dataSpan: span)] }
            guard let url = fetchableURL(span, in: scanner) else { return [] }
            return [Found(pointer: "", url: url)]
        case UInt8(ascii: "["):
            var found: [Found] = []
            try scanner.forEachElement(depth: depth) { (scanner: inout JSONByteScanner, index: Int) throws(JSONByteScanner.Failure) in
                for inner in try walk(&scanner, depth: depth + 1) {
                    found.append(Found(pointer: "/\(index)" + inner.pointer, url: inner.url, dataSpan: inner.dataSpan))
                }
            }
            return found
        case UInt8(ascii: "{"):
            // Sorting needs every key, and a later duplicate replaces an earlier one even when it holds
            // no URL; keys are only decoded when some member holds one.
            var members: [(key: JSONByteScanner.StringSpan, found: [Found])] = []
            var anyFound = false
            try scanner.forEachMember(depth: depth) {
                (scanner: inout JSONByteScanner, key: JSONByteScanner.StringSpan) throws(JSONByteScanner.Failure) in
                let found = try walk(&scanner, depth: depth + 1)
                anyFound = anyFound || !found.isEmpty
                members.append((key, found))
            }
            guard anyFound else { return [] }
            // As in a Swift dictionary: keys are equal when canonically equivalent, the first spelling
            // stays, the last value wins.
            var slots: [String: Int] = [:]
            var kept: [(key: String, found: [Found])] = []
            for member in members {
                guard let key = scanner.string(member.key, limit: .max) else { throw scanner.failure("malformed key") }
                if let slot = slots[key] {
                    kept[slot].found = member.found
                } else {
                    slots[key] = kept.count
                    kept.append((key, member.found))
                }
            }
            kept.sort { $0.key < $1.key }
            var found: [Found] = []
            for member in kept where !member.found.isEmpty {
                let prefix = "/" + escape(member.key)
                for inner in member.found { found.append(Found(pointer: prefix + inner.pointer, url: inner.url, dataSpan: inner.dataSpan)) }
            }
            return found
        default:
            try scanner.skipValue(depth: depth)
            return []
        }
    }

    /// The string's value when it is a fetchable URL. Unescaped ASCII (nearly every URL) is checked on
    /// the body's bytes and only copied into a String when it is one; an escaped string is copied only when
    /// it starts like a URL (a long text output full of `\n` is not).
    private static func fetchableURL(_ span: JSONByteScanner.StringSpan, in scanner: JSONByteScanner) -> String? {
        if !span.hasEscapes {
            let raw = UnsafeBufferPointer(rebasing: scanner.bytes[span.range])
            if let answer = isFetchableASCIIURL(raw) { return answer ? String(decoding: raw, as: UTF8.self) : nil }
        } else {
            guard let head = scanner.prefix(span, maxBytes: 8),
                head.count >= 7, String(decoding: head.prefix(7), as: UTF8.self).lowercased().hasPrefix("http")
            else { return nil }
        }
        guard let text = scanner.string(span, limit: .max) else { return nil }
        return isFetchableURL(text) ? text : nil
    }

    /// The data: URI header when the string is a data: output; only its first bytes are read.
    static func dataHeader(_ span: JSONByteScanner.StringSpan, in scanner: JSONByteScanner) -> DataURI.Header? {
        if !span.hasEscapes {
            guard span.range.count >= 6, scanner.bytes[span.range.lowerBound] | 0x20 == UInt8(ascii: "d") else { return nil }
            return DataURI.header(scanner.bytes[span.range.prefix(DataURI.maxHeaderBytes + 1)])
        }
        guard let head = scanner.prefix(span, maxBytes: DataURI.maxHeaderBytes + 1) else { return nil }
        return DataURI.header(head)
    }

    private static func walk(_ value: Any?, pointer: String, into found: inout [Found]) {
        switch value {
        case let string as String:
            if let header = DataURI.header(string.utf8.prefix(DataURI.maxHeaderBytes + 1)) {
                found.append(Found(pointer: pointer, url: header.text))
            } else if isFetchableURL(string) {
                found.append(Found(pointer: pointer, url: string))
            }
        case let array as [Any]:
            for (index, element) in array.enumerated() { walk(element, pointer: pointer + "/\(index)", into: &found) }
        case let object as [String: Any]:
            for key in object.keys.sorted() { walk(object[key], pointer: pointer + "/" + escape(key), into: &found) }
        default:
            break
        }
    }

    /// Only absolute http(s) URLs with a host and without whitespace or control characters count: captions
    /// and relative paths are text (data: URIs are found before this).
    ///
    /// Every output string of every webhook passes here, and a Character-wise scan showed in the intake
    /// profile, so ASCII strings (nearly all URLs) are checked on their UTF-8 bytes; the rest keep the
    /// Character rules (Unicode lower-casing and White_Space), which give the same answers for ASCII.
    static func isFetchableURL(_ string: String) -> Bool {
        var string = string
        if let answer = string.utf8.withContiguousStorageIfAvailable(isFetchableASCIIURL), let answer { return answer }
        string.makeContiguousUTF8()
        if let answer = string.utf8.withContiguousStorageIfAvailable(isFetchableASCIIURL), let answer { return answer }
        let lower = string.prefix(8).lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else { return false }
        let rest = string.drop(while: { $0 != ":" }).dropFirst(3)
        return !rest.isEmpty && !rest.hasPrefix("/") && !string.contains(where: { $0.isWhitespace })
            && !string.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    }

    /// The answer for an ASCII string; nil when a byte is not ASCII.
    private static func isFetchableASCIIURL(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool? {
        var whitespace = false
        for byte in bytes {
            switch byte {
            case 0x80...: return nil
            case 0x00..<0x20, 0x20, 0x7F: whitespace = true  // whitespace and control characters
            default: continue
            }
        }
        func hasPrefix(_ prefix: StaticString) -> Bool {
            guard bytes.count >= prefix.utf8CodeUnitCount else { return false }
            for i in 0..<prefix.utf8CodeUnitCount {
                let byte = bytes[i]
                if (byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) != prefix.utf8Start[i] { return false }
            }
            return true
        }
        let schemeLength = hasPrefix("https://") ? 8 : hasPrefix("http://") ? 7 : 0
        return schemeLength > 0 && bytes.count > schemeLength && bytes[schemeLength] != UInt8(ascii: "/") && !whitespace
    }

    /// RFC 6901 escaping; a NUL is left out (RFC 6901 has no escape for it and PostgreSQL text cannot
    /// hold one), so a key spelled with one names the same output as the key without.
    static func escape(_ key: String) -> String {
        var key = key
        if key.utf8.contains(0) { key.removeAll { $0 == "\0" } }
        return key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}
