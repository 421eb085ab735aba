/// A configuration problem, always naming the key so an operator knows what to fix.
/// `afterimage` exits 78 (EX_CONFIG) on it. The message never contains the offending value when the key
/// holds a secret.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let key: String
    public let message: String

    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "configuration key \(key): \(message)" }
}
