/// Why the server could not do what was asked. A value, not a string, so callers can tell a
/// configuration mistake (exit 78) from a runtime failure (exit 1) without parsing messages.
public struct HTTPServerError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A configuration value is out of range (port, limits, timeout).
        public static let invalidConfiguration = Code("invalid_configuration")
        /// The host could not be turned into an address to bind.
        public static let invalidAddress = Code("invalid_address")
        /// libmicrohttpd refused to start (address in use, bad inherited socket, no threads).
        public static let startFailed = Code("start_failed")
        /// `start()` was called on a server that was already started.
        public static let alreadyStarted = Code("already_started")
        /// `Router.respond(to:)`: a deferred route did not answer in time.
        public static let noAnswer = Code("no_answer")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "HTTPServerError(\(code)): \(message)" }
}
