import MicroHTTP

/// Why a lookup request or command could not be answered as asked. The message is fixed text plus values
/// we produced (states, reasons recorded by workers); it never carries a token or a request body.
public struct LookupError: ResponseError, CustomStringConvertible, Sendable, Equatable {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let invalidParameter = Code(rawValue: "invalid_parameter")
        public static let predictionNotFound = Code(rawValue: "prediction_not_found")
        public static let outputNotFound = Code(rawValue: "output_not_found")
        public static let assetNotFound = Code(rawValue: "asset_not_found")
        /// Still pending or in flight: ask again after Retry-After.
        public static let assetNotReady = Code(rawValue: "asset_not_ready")
        public static let assetFailed = Code(rawValue: "asset_failed")
        public static let assetExpired = Code(rawValue: "asset_expired")
        /// Retry asked for an asset that is not failed or expired.
        public static let notRetryable = Code(rawValue: "asset_not_retryable")
        /// Deleted on demand or by retention: only a tombstone is left.
        public static let deleted = Code(rawValue: "deleted")
    }

    public let code: Code
    public let message: String
    /// Seconds for `Retry-After`, for `assetNotReady`.
    public let retryAfter: Int?

    public init(_ code: Code, _ message: String, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The HTTP status the API answers with.
    public var status: Int {
        switch code {
        case .invalidParameter: 400
        case .predictionNotFound, .outputNotFound, .assetNotFound: 404
        case .assetNotReady, .notRetryable: 409
        case .assetFailed, .assetExpired, .deleted: 410
        default: 500
        }
    }

    public var errorCode: String { code.rawValue }

    /// `Retry-After` while an asset is not ready.
    public var headers: [(String, String)] { retryAfter.map { [("Retry-After", String($0))] } ?? [] }
}
