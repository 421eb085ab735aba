import PQ

/// A provider's name as it appears in rows (`provider` columns), object keys (`{provider}/{id}/{n}.ext`),
/// metric labels and lookup URLs (`/v1/predictions/{provider}/{id}`). A type rather than a bare string so
/// a provider is never confused with an id or a state; a string literal is one (`"replicate"`), since
/// the database and the URLs spell it that way.
public struct ProviderName: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let replicate: ProviderName = "replicate"
    public static let stability: ProviderName = "stability"
    public static let ideogram: ProviderName = "ideogram"
    public static let fal: ProviderName = "fal"
    /// URLs handed to `POST /v1/archives` by any app (OpenAI, Black Forest Labs, Runway, …).
    public static let archive: ProviderName = "archive"
}

extension ProviderName: PQEncodable, PQDecodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { .text(rawValue) }
    public static func pqDecode(text: String?) throws(PQError) -> ProviderName { ProviderName(rawValue: try String.pqDecode(text: text)) }
}
