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
    static func isFetchableURL(_ string: String) -> Bool {
        let lower = string.prefix(8).lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else { return false }
        let rest = string.drop(while: { $0 != ":" }).dropFirst(3)
        return !rest.isEmpty && !rest.hasPrefix("/") && !string.contains(where: { $0.isWhitespace })
    }

    static func escape(_ key: String) -> String {
        key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}
