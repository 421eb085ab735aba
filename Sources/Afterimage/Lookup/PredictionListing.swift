import Foundation
import PQ

/// Where a page of the prediction listing ends: the sort key (first_seen_at, provider, id) of its last
/// prediction. The next page starts strictly before it, so predictions arriving while a client pages
/// through (they sort first, newest) never shift the pages it has not read, and nothing repeats.
///
/// On the wire it is opaque: base64url of a JSON array `[first_seen_at, provider, id]`, with the timestamp
/// in PostgreSQL's own text (`2026-11-21 10:00:00.123456+00`), so it goes back to the server exactly, to
/// the microsecond (the API's millisecond timestamps would skip rows that share a millisecond).
public struct PredictionCursor: Sendable, Equatable {
    public let firstSeenAt: String
    public let provider: String
    public let id: String

    /// Longest cursor accepted: a timestamp, a provider and an id at their limits, JSON-quoted, in base64.
    static let maxEncodedBytes = 1024

    public var encoded: String {
        let json = (try? JSONSerialization.data(withJSONObject: [firstSeenAt, provider, id])) ?? Data()
        return json.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public init(firstSeenAt: String, provider: String, id: String) {
        self.firstSeenAt = firstSeenAt
        self.provider = provider
        self.id = id
    }

    /// Decodes `before=`; any other text (edited, truncated, from another API) is an `invalidParameter`,
    /// never an SQL error.
    public init(encoded text: String) throws(LookupError) {
        let refusal = LookupError(.invalidParameter, "before must be the next_before value of the previous page")
        guard !text.isEmpty, text.utf8.count <= Self.maxEncodedBytes else { throw refusal }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
            let parts = try? JSONSerialization.jsonObject(with: data) as? [String], parts.count == 3,
            Self.isTimestampText(parts[0]),
            !parts[1].isEmpty, parts[1].utf8.count <= LookupRoutes.maxProviderBytes,
            !parts[2].isEmpty, parts[2].utf8.count <= 4096
        else { throw refusal }
        self.init(firstSeenAt: parts[0], provider: parts[1], id: parts[2])
    }

    /// `YYYY-MM-DD HH:MM:SS[.ffffff]+00`, as a UTC session prints a `timestamptz`: the only form we hand
    /// out, checked byte by byte so a crafted cursor can never make the cast fail on the server.
    static func isTimestampText(_ text: String) -> Bool {
        let b = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { b[$0] >= 0x30 && b[$0] <= 0x39 } }
        guard b.count >= 22, b.count <= 29, digits(0..<4), b[4] == UInt8(ascii: "-"), digits(5..<7), b[7] == UInt8(ascii: "-"),
            digits(8..<10), b[10] == UInt8(ascii: " "), digits(11..<13), b[13] == UInt8(ascii: ":"), digits(14..<16),
            b[16] == UInt8(ascii: ":"), digits(17..<19), Array(b.suffix(3)) == Array("+00".utf8)
        else { return false }
        let fraction = b[19..<(b.count - 3)]
        if fraction.isEmpty { return true }
        return fraction.first == UInt8(ascii: ".") && fraction.count >= 2 && fraction.count <= 7
            && digits((fraction.startIndex + 1)..<fraction.endIndex)
    }
}

/// One prediction of the listing: what the gallery shows, without the input (the prediction view fetches
/// that on its own; it can be large).
public struct PredictionSummary: Sendable {
    public let provider: String
    public let id: String
    public let status: String
    public let model: String?
    public let version: String?
    public let error: String?
    public let dataRemoved: Bool
    public let createdAt: String?
    public let startedAt: String?
    public let completedAt: String?
    public let firstSeenAt: String
    public let updatedAt: String
    public let assets: [AssetView]
    /// This prediction's position, for the next page's `before`.
    public let cursor: PredictionCursor
}

public struct PredictionPage: Sendable {
    public let predictions: [PredictionSummary]
    /// nil on the last page.
    public let next: PredictionCursor?
}

extension LookupStore {
    public static let maxPredictionPageSize = 100
    public static let defaultPredictionPageSize = 30

    public struct PredictionFilter: Sendable {
        public var provider: String?
        /// The prediction's status as the provider reported it (`succeeded`, `failed`, …).
        public var status: String?
        public var before: PredictionCursor?
        public var limit: Int

        public init(
            provider: String? = nil, status: String? = nil, before: PredictionCursor? = nil,
            limit: Int = LookupStore.defaultPredictionPageSize
        ) {
            self.provider = provider
            self.status = status
            self.before = before
            self.limit = limit
        }
    }

    /// The listing's statement for one combination of filters. Each combination is its own fixed SQL text
    /// (prepared once per connection) rather than one text with `$n IS NULL OR …`: an `OR` on the cursor or
    /// the provider would stop PostgreSQL from using them as index bounds, and every page would walk the
    /// index from the newest row. The status filter is checked while walking (it is not indexed; see
    /// migrations/0010_console.sql).
    ///
    /// Parameters: $1 limit, $2 status or NULL, then the provider when filtered, then the cursor when given
    /// (its time, its provider unless filtered by one, its id).
    static func predictionListSQL(byProvider: Bool, withCursor: Bool) -> String {
        var conditions = ["($2::text IS NULL OR p.status = $2)"]
        let order: String
        if byProvider {
            conditions.append("p.provider = $3")
            // One provider: (first_seen_at, id) orders exactly like the full key and matches the provider
            // index's remaining columns, so the cursor bounds the scan.
            if withCursor { conditions.append("(p.first_seen_at, p.id) < ($4::timestamptz, $5::text)") }
            order = "p.first_seen_at DESC, p.id DESC"
        } else {
            if withCursor { conditions.append("(p.first_seen_at, p.provider, p.id) < ($3::timestamptz, $4::text, $5::text)") }
            order = "p.first_seen_at DESC, p.provider DESC, p.id DESC"
        }
        return """
            WITH page AS (
                SELECT p.provider, p.id, p.status, p.model, p.version, p.error, p.data_removed, p.created_at, p.started_at,
                       p.completed_at, p.first_seen_at, p.updated_at
                FROM predictions p
                WHERE \(conditions.joined(separator: " AND "))
                ORDER BY \(order)
                LIMIT $1
            )
            SELECT p.provider, p.id, p.status, p.model, p.version, p.error, p.data_removed, p.created_at, p.started_at,
                   p.completed_at, p.first_seen_at, p.updated_at, \(assetColumns)
            FROM page p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
            ORDER BY p.first_seen_at DESC, p.provider DESC, p.id DESC, a.output_index, a.id
            """
    }

    /// The texts, built once.
    static let predictionListStatements: [Bool: [Bool: String]] = [
        false: [false: predictionListSQL(byProvider: false, withCursor: false), true: predictionListSQL(byProvider: false, withCursor: true)],
        true: [false: predictionListSQL(byProvider: true, withCursor: false), true: predictionListSQL(byProvider: true, withCursor: true)],
    ]

    /// The statement and its parameters for `filter`; the limit asks for one more row than the page, to
    /// know whether another page follows.
    static func predictionListQuery(_ filter: PredictionFilter) -> (sql: String, parameters: [any PQEncodable]) {
        let limit = min(max(filter.limit, 1), maxPredictionPageSize)
        var parameters: [any PQEncodable] = [limit + 1, filter.status]
        if let provider = filter.provider { parameters.append(provider) }
        if let cursor = filter.before {
            parameters.append(cursor.firstSeenAt)
            if filter.provider == nil { parameters.append(cursor.provider) }
            parameters.append(cursor.id)
        }
        let sql = predictionListStatements[filter.provider != nil]![filter.before != nil]!
        return (sql, parameters)
    }

    /// A page of predictions, newest first (by when Afterimage first heard of them), each with its assets in
    /// output order. One statement: the page of predictions, then their assets joined by the assets'
    /// (provider, prediction_id, …) unique index.
    /// Throws `invalidParameter` for a cursor of another provider's listing: within one provider the statement
    /// compares (first_seen_at, id) only, which is the full key's order only when the providers agree.
    public func predictions(_ filter: PredictionFilter, on connection: Connection) throws -> PredictionPage {
        if let provider = filter.provider, let cursor = filter.before, cursor.provider != provider {
            throw LookupError(.invalidParameter, "before comes from a listing with another provider filter; start again without it")
        }
        let limit = min(max(filter.limit, 1), Self.maxPredictionPageSize)
        let (sql, parameters) = Self.predictionListQuery(filter)
        let rows = try connection.query(prepared: sql, parameters)
        var predictions: [PredictionSummary] = []
        var hasMore = false
        var index = 0
        while index < rows.count {
            let first = rows[index]
            let provider: String = try first.decode(0)
            let id: String = try first.decode(1)
            var assets: [AssetView] = []
            var end = index
            // The rows of one prediction are adjacent (the statement orders by it first).
            while end < rows.count, try rows[end].decode(0, as: String.self) == provider, try rows[end].decode(1, as: String.self) == id {
                if !rows[end].isNull(12) { assets.append(try Self.decodeAsset(rows[end], from: 12)) }
                end += 1
            }
            if predictions.count == limit {
                hasMore = true
                break
            }
            let firstSeenAt: String = try first.decode(10)
            predictions.append(
                PredictionSummary(
                    provider: provider, id: id, status: try first.decode(2), model: try first.decode(3), version: try first.decode(4),
                    error: try first.decode(5), dataRemoved: try first.decode(6),
                    createdAt: Self.isoTimestamp(try first.decode(7, as: String?.self)),
                    startedAt: Self.isoTimestamp(try first.decode(8, as: String?.self)),
                    completedAt: Self.isoTimestamp(try first.decode(9, as: String?.self)),
                    firstSeenAt: Self.isoTimestamp(firstSeenAt), updatedAt: Self.isoTimestamp(try first.decode(11, as: String.self)),
                    assets: assets, cursor: PredictionCursor(firstSeenAt: firstSeenAt, provider: provider, id: id)))
            index = end
        }
        return PredictionPage(predictions: predictions, next: hasMore ? predictions.last?.cursor : nil)
    }
}
