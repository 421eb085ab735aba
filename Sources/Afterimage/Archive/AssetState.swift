import PQ

/// Where one output file stands (`assets.state`, whose CHECK constraint lists the same five).
public enum AssetState: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Queued: a worker claims it once `next_attempt_at` has come.
    case pending
    /// Claimed by a worker, under a lease.
    case inFlight = "in_flight"
    /// In the bucket with its SHA-256.
    case stored
    /// Given up on for good (disallowed, too large, undecodable, out of tries); `failure_reason` says why.
    case failed
    /// The provider deleted the source before it could be stored.
    case expired

    /// As the database, the API and the logs spell it (`in_flight`).
    public var description: String { rawValue }

    /// Nothing happens to it any more unless someone retries it.
    public var isSettled: Bool { self == .stored || self == .failed || self == .expired }
}

extension AssetState: PQEncodable, PQDecodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { .text(rawValue) }
    public static func pqDecode(text: String?) throws(PQError) -> AssetState {
        guard let state = AssetState(rawValue: try String.pqDecode(text: text)) else {
            throw PQError(code: .decodingFailed, message: "value is not a valid asset state")
        }
        return state
    }
}
