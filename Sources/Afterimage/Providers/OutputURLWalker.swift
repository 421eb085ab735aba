import Foundation

/// Finds every http(s) URL anywhere in a prediction's `output` (a string, a list, nested objects) with its
/// JSON pointer (RFC 6901), in a stable walk order: the pointer is the asset's identity, so the same
/// output always yields the same assets and a repeated webhook never makes a second copy.
public enum OutputURLWalker {
    public struct Found: Sendable, Equatable {
        public let pointer: String
        public let url: String
    }

    /// Object keys are visited in sorted order so the walk order (and so each output's index `n` in the
    /// storage key) does not depend on how the provider ordered its JSON.
    public static func urls(in output: Any?) -> [Found] {
        var found: [Found] = []
        walk(output, pointer: "", into: &found)
        return found
    }

    private static func walk(_ value: Any?, pointer: String, into found: inout [Found]) {
        switch value {
        case let string as String:
            if isFetchableURL(string) { found.append(Found(pointer: pointer, url: string)) }
        case let array as [Any]:
            for (index, element) in array.enumerated() { walk(element, pointer: pointer + "/\(index)", into: &found) }
        case let object as [String: Any]:
            for key in object.keys.sorted() { walk(object[key], pointer: pointer + "/" + escape(key), into: &found) }
        default:
            break
        }
    }

    /// Only absolute http(s) URLs with a host count: captions, data: URIs and relative paths are text.
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
    }

    /// The answer for an ASCII string; nil when a byte is not ASCII.
    private static func isFetchableASCIIURL(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool? {
        var whitespace = false
        for byte in bytes {
            switch byte {
            case 0x80...: return nil
            case 0x09...0x0D, 0x20: whitespace = true
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

    static func escape(_ key: String) -> String {
        key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}
