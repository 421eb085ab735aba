/// The key pair (and optional STS session token) requests are signed with.
///
/// Kept as a value of its own so that everything that prints configuration or errors can hold
/// credentials without any risk of printing the secret: `description` redacts it.
public struct S3Credentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// Shows the access key id (it names the key, and appears in every request anyway) but never
    /// the secret or the session token.
    public var description: String {
        "S3Credentials(accessKeyID: \(accessKeyID), secretAccessKey: <redacted>"
            + (sessionToken == nil ? ")" : ", sessionToken: <redacted>)")
    }
}
