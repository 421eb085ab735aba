import Foundation
import PQ

/// One row of `deliveries` written with its body streamed, not bound as a parameter: the reusable step
/// for any webhook route whose bodies may be large (`Router.add(…, bodyAsFile: true)` hands them over as
/// files). The body goes to the server with `COPY … FROM STDIN (FORMAT binary)` in pieces read from the
/// `DeliveryBody` (its spill file, or its bytes in place), inside the caller's transaction, so recording a
/// 60 MiB body costs a piece of memory instead of the body twice (once read back, once in libpq's send
/// buffer).
///
/// COPY has no `ON CONFLICT`: a webhook id recorded before fails the statement with unique_violation
/// (`PQError.isUniqueViolation`, constraint `deliveries_provider_webhook_id_key`), which aborts the
/// transaction. Callers look the id up first (a retry is then answered without work) and treat the
/// violation, which only a concurrent copy of the same delivery can cause, as a duplicate.
public struct DeliveryRecord: Sendable {
    public var provider: String
    public var webhookID: String
    public var timestamp: Date?
    /// `webhook` or `reconcile`.
    public var source: String
    public var receivedAt: Date
    /// `accepted` or `unparseable`.
    public var outcome: String
    public var error: String?

    public init(
        provider: String, webhookID: String, timestamp: Date?, source: String, receivedAt: Date,
        outcome: String, error: String?
    ) {
        self.provider = provider
        self.webhookID = webhookID
        self.timestamp = timestamp
        self.source = source
        self.receivedAt = receivedAt
        self.outcome = outcome
        self.error = error
    }

    /// The unique constraint a repeated webhook id violates.
    public static let uniqueConstraint = "deliveries_provider_webhook_id_key"

    /// Inserts the row with `body` on `connection` and returns its id (taken from the table's sequence
    /// first, since COPY returns nothing).
    public func insert(body: DeliveryBody, on connection: Connection) throws -> Int64 {
        guard let id = try connection.query("SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))").first?.decode(0, as: Int64.self) else {
            throw PQError(code: .queryFailed, message: "the deliveries sequence returned no value")
        }
        try connection.copyIn(
            """
            COPY deliveries (id, provider, webhook_id, webhook_timestamp, source, received_at, outcome, error, body)
            FROM STDIN (FORMAT binary)
            """
        ) { copy in
            var row = BinaryCopyEncoder()
            row.header()
            row.row(fields: 9)
            row.int64(id)
            try row.text(provider)
            try row.text(webhookID)
            row.timestamp(timestamp)
            try row.text(source)
            row.timestamp(receivedAt)
            try row.text(outcome)
            // A reason quoting the body could carry a NUL, which text cannot hold.
            try row.text(error.map { $0.replacingOccurrences(of: "\u{0}", with: "") })
            try row.fieldLength(body.count)
            try copy.write(row.take())
            try body.forEachPiece(of: 0..<body.count, chunkSize: 128 << 10) { piece in try copy.write(piece) }
            row.trailer()
            try copy.write(row.take())
        }
        return id
    }
}

extension Error {
    /// A repeated webhook id (`DeliveryRecord.insert` found the delivery recorded by a concurrent copy).
    var isDuplicateDelivery: Bool {
        guard let error = self as? PQError else { return false }
        return error.isUniqueViolation && error.constraintName == DeliveryRecord.uniqueConstraint
    }
}
