/// Response headers in arrival order. Names compare case-insensitively (HTTP/1.1 and HTTP/2 spell them
/// differently); repeated headers are kept, and the subscript answers the last one, which is what a
/// server meant when it repeated a single-valued header.
public struct HTTPHeaders: Sendable, CustomStringConvertible {
    public var all: [(String, String)]

    public init(_ all: [(String, String)] = []) { self.all = all }

    /// The last value of `name`, or nil.
    public subscript(_ name: String) -> String? {
        all.last { $0.0.caseInsensitiveEquals(name) }?.1
    }

    /// Every value of `name` in order (Set-Cookie, Link, Vary...).
    public func values(_ name: String) -> [String] {
        all.filter { $0.0.caseInsensitiveEquals(name) }.map(\.1)
    }

    public var description: String { all.map { "\($0.0): \($0.1)" }.joined(separator: "\n") }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.count == other.utf8.count && lowercased() == other.lowercased()
    }
}
