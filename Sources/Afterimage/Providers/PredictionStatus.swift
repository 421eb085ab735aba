import PQ

/// Where a prediction stands, in the one vocabulary every provider is mapped to (Replicate's own:
/// Ideogram's delivery is `succeeded`, fal's `OK`/`ERROR` are `succeeded`/`failed`, an archive request is
/// `succeeded`). Intake ranks them so a later event never moves a prediction backwards (`rank`).
public struct PredictionStatus: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let starting: PredictionStatus = "starting"
    public static let processing: PredictionStatus = "processing"
    public static let succeeded: PredictionStatus = "succeeded"
    public static let failed: PredictionStatus = "failed"
    public static let canceled: PredictionStatus = "canceled"
    /// Replicate aborted it at its `deadline`.
    public static let aborted: PredictionStatus = "aborted"

    public static let all: Set<PredictionStatus> = [.starting, .processing, .succeeded, .failed, .canceled, .aborted]
    public static let terminal: Set<PredictionStatus> = [.succeeded, .failed, .canceled, .aborted]

    /// Nothing changes it any more: outputs are queued only once a prediction is terminal.
    public var isTerminal: Bool { Self.terminal.contains(self) }
}

extension PredictionStatus: PQEncodable, PQDecodable {
    public static var pqTypeOID: UInt32 { PQTypeOID.unspecified }
    public var pqValue: PQValue { .text(rawValue) }
    public static func pqDecode(text: String?) throws(PQError) -> PredictionStatus {
        PredictionStatus(rawValue: try String.pqDecode(text: text))
    }
}
