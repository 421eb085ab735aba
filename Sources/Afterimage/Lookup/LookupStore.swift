import Foundation
import PQ

/// One output file as the lookup API and the `assets` commands show it.
public struct AssetView: Sendable, Equatable {
    public let id: Int64
    public let provider: String
    public let predictionID: String
    public let index: Int
    public let pointer: String
    public let state: AssetState
    public let attempts: Int
    public let size: Int64?
    public let sha256: String?
    public let contentType: String?
    public let key: String?
    public let failureReason: String?
    /// Timestamps are ISO 8601 UTC text formatted by PostgreSQL, ready for JSON and terminals.
    public let createdAt: String
    public let updatedAt: String
    public let storedAt: String?
    /// Seconds until the next try is due (0 when due now); how long a client should wait before asking again.
    public let secondsUntilNextAttempt: Int
    /// Where the bytes come from: `url` (downloaded), `inline` (decoded from the webhook body) or
    /// `stability_result` (polled from Stability's results API).
    public let sourceKind: String
    /// The provider's download link, for `url` assets only. An inline asset's `inline:` marker is not a link
    /// and a Stability results endpoint needs the API key, so both are nil: nothing shows them as links.
    public let sourceURL: String?
    /// What Stability reported (`SUCCESS`, `CONTENT_FILTERED`, …); nil for other providers.
    public let finishReason: String?
    /// The generation seed Stability reported; nil for other providers.
    public let seed: Int64?

    public var isStored: Bool { state == .stored && key != nil }
}

/// One prediction with its outputs in walk order.
public struct PredictionView: Sendable {
    public let provider: String
    public let id: String
    public let status: String
    public let model: String?
    public let version: String?
    /// The prediction's input as JSON text (PostgreSQL's rendering of the jsonb column).
    public let inputJSON: String?
    public let error: String?
    public let dataRemoved: Bool
    public let createdAt: String?
    public let startedAt: String?
    public let completedAt: String?
    public let firstSeenAt: String
    public let updatedAt: String
    public let assets: [AssetView]
    /// When it was deleted (a tombstone: lookups answer 410); nil while it is kept.
    public var deletedAt: String? = nil
}

/// A page of the asset listing and the cursor for the next one (nil on the last page).
public struct AssetPage: Sendable {
    public let assets: [AssetView]
    public let nextAfter: Int64?
}

/// The lookup API's SQL. Each call is one statement (the retry is one transaction), so a lookup costs one
/// round trip, comparable with `pgbench -S`.
public struct LookupStore: Sendable {
    /// What `?state=` and `assets list --state` accept.
    public static let states: Set<String> = Set(AssetState.allCases.map(\.rawValue))
    public static let maxPageSize = 1000
    public static let defaultPageSize = 100

    public init() {}

    /// The asset columns every query returns, in `decodeAsset`'s order. Timestamps come as PostgreSQL's own
    /// text (`2026-11-21 10:00:00.123456+00`, the session runs in UTC) and are rewritten by `isoTimestamp`:
    /// `to_char` on the server cost more than the rest of the row.
    static let assetColumns = """
        a.id, a.provider, a.prediction_id, a.output_index, a.pointer, a.state, a.attempts, a.size_bytes, a.sha256,
        a.content_type, a.storage_key, a.failure_reason, a.created_at, a.updated_at, a.stored_at,
        greatest(0, ceil(extract(epoch FROM a.next_attempt_at - now())))::bigint,
        a.source_kind, CASE WHEN a.source_kind = 'url' THEN a.source_url END, a.finish_reason, a.seed
        """
    static let assetColumnCount = 20

    static func decodeAsset(_ row: Row, from c: Int) throws -> AssetView {
        AssetView(
            id: try row.decode(c, as: Int64.self), provider: try row.decode(c + 1), predictionID: try row.decode(c + 2),
            index: try row.decode(c + 3), pointer: try row.decode(c + 4), state: try row.decode(c + 5),
            attempts: try row.decode(c + 6), size: try row.decode(c + 7), sha256: try row.decode(c + 8),
            contentType: try row.decode(c + 9), key: try row.decode(c + 10), failureReason: try row.decode(c + 11),
            createdAt: isoTimestamp(try row.decode(c + 12, as: String.self)), updatedAt: isoTimestamp(try row.decode(c + 13, as: String.self)),
            storedAt: isoTimestamp(try row.decode(c + 14, as: String?.self)),
            secondsUntilNextAttempt: Int(clamping: try row.decode(c + 15, as: Int64.self)),
            sourceKind: try row.decode(c + 16), sourceURL: try row.decode(c + 17), finishReason: try row.decode(c + 18),
            seed: try row.decode(c + 19))
    }

    /// The prediction and its assets, joined. Sent as a prepared statement (`query(prepared:)`): each pooled
    /// connection parses and plans it once, which was two thirds of the server's time per lookup otherwise
    /// (bench/lookup), without the PL/pgSQL indirection 0003 used for the same purpose.
    static let predictionSQL = """
        SELECT p.status, p.model, p.version, p.input::text, p.error, p.data_removed, p.created_at, p.started_at,
               p.completed_at, p.first_seen_at, p.updated_at, \(assetColumns), p.deleted_at
        FROM predictions p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
        WHERE p.provider = $1 AND p.id = $2
        ORDER BY a.output_index, a.id
        """

    /// The prediction and all its assets in one statement; nil when there is no such prediction.
    public func prediction(provider: String, id: String, on connection: Connection) throws -> PredictionView? {
        let rows = try connection.query(prepared: Self.predictionSQL, [provider, id])
        guard let first = rows.first else { return nil }
        var assets: [AssetView] = []
        assets.reserveCapacity(rows.count)
        for row in rows where !row.isNull(11) { assets.append(try Self.decodeAsset(row, from: 11)) }
        return PredictionView(
            provider: provider, id: id, status: try first.decode(0), model: try first.decode(1), version: try first.decode(2),
            inputJSON: try first.decode(3), error: try first.decode(4), dataRemoved: try first.decode(5),
            createdAt: Self.isoTimestamp(try first.decode(6, as: String?.self)),
            startedAt: Self.isoTimestamp(try first.decode(7, as: String?.self)),
            completedAt: Self.isoTimestamp(try first.decode(8, as: String?.self)),
            firstSeenAt: Self.isoTimestamp(try first.decode(9, as: String.self)),
            updatedAt: Self.isoTimestamp(try first.decode(10, as: String.self)), assets: assets,
            deletedAt: Self.isoTimestamp(try first.decode(11 + Self.assetColumnCount, as: String?.self)))
    }

    /// Several predictions of one provider and all their assets in one statement, for `LookupBatcher`:
    /// the rows of each prediction are adjacent, its assets in output order.
    static let predictionsSQL = """
        SELECT p.id, p.status, p.model, p.version, p.input::text, p.error, p.data_removed, p.created_at, p.started_at,
               p.completed_at, p.first_seen_at, p.updated_at, \(assetColumns), p.deleted_at
        FROM predictions p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
        WHERE p.provider = $1 AND p.id = ANY($2::text[])
        ORDER BY p.id, a.output_index, a.id
        """

    /// The predictions among `ids` that exist, by id, each with all its assets.
    public func predictions(provider: String, ids: [String], on connection: Connection) throws -> [String: PredictionView] {
        let rows = try connection.query(prepared: Self.predictionsSQL, [provider, try PQArray<String>(ids.map { Optional($0) })])
        var views: [String: PredictionView] = [:]
        views.reserveCapacity(ids.count)
        var index = 0
        while index < rows.count {
            let first = rows[index]
            let id: String = try first.decode(0)
            var assets: [AssetView] = []
            var end = index
            while end < rows.count, try rows[end].decode(0, as: String.self) == id {
                if !rows[end].isNull(12) { assets.append(try Self.decodeAsset(rows[end], from: 12)) }
                end += 1
            }
            views[id] = PredictionView(
                provider: provider, id: id, status: try first.decode(1), model: try first.decode(2), version: try first.decode(3),
                inputJSON: try first.decode(4), error: try first.decode(5), dataRemoved: try first.decode(6),
                createdAt: Self.isoTimestamp(try first.decode(7, as: String?.self)),
                startedAt: Self.isoTimestamp(try first.decode(8, as: String?.self)),
                completedAt: Self.isoTimestamp(try first.decode(9, as: String?.self)),
                firstSeenAt: Self.isoTimestamp(try first.decode(10, as: String.self)),
                updatedAt: Self.isoTimestamp(try first.decode(11, as: String.self)), assets: assets,
                deletedAt: Self.isoTimestamp(try first.decode(12 + Self.assetColumnCount, as: String?.self)))
            index = end
        }
        return views
    }

    static let outputSQL = """
        SELECT \(assetColumns) FROM assets a
        WHERE a.provider = $1 AND a.prediction_id = $2 AND a.output_index = $3::integer
        ORDER BY a.id LIMIT 1
        """

    /// Output `index` of a prediction; nil when the prediction or that output is unknown.
    public func output(provider: String, predictionID: String, index: Int, on connection: Connection) throws -> AssetView? {
        guard let row = try connection.query(prepared: Self.outputSQL, [provider, predictionID, index]).first else { return nil }
        return try Self.decodeAsset(row, from: 0)
    }

    /// `2026-11-21T10:00:00.123Z` (ISO 8601, UTC, milliseconds, the API's form) from PostgreSQL's ISO text of
    /// a `timestamptz` in a UTC session (`2026-11-21 10:00:00.123456+00`; fraction digits vary, none on a
    /// whole second). The fraction is truncated to milliseconds. Text of any other shape (infinity, BC
    /// dates, years past 9999) is returned unchanged rather than guessed at.
    static func isoTimestamp(_ text: String) -> String {
        var bytes = Array(text.utf8)
        guard bytes.count >= 22, bytes[10] == UInt8(ascii: " "), bytes[4] == UInt8(ascii: "-"),
            bytes[13] == UInt8(ascii: ":"), bytes[bytes.count - 3] == UInt8(ascii: "+"),
            bytes[bytes.count - 2] == UInt8(ascii: "0"), bytes[bytes.count - 1] == UInt8(ascii: "0")
        else { return text }
        bytes.removeLast(3)  // "+00"
        bytes[10] = UInt8(ascii: "T")
        var fraction: [UInt8] = []
        if bytes.count > 19 {
            guard bytes[19] == UInt8(ascii: ".") else { return text }
            fraction = Array(bytes[20...].prefix(3))
            bytes.removeSubrange(19...)
        }
        while fraction.count < 3 { fraction.append(UInt8(ascii: "0")) }
        bytes.append(UInt8(ascii: "."))
        bytes.append(contentsOf: fraction)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    static func isoTimestamp(_ text: String?) -> String? { text.map { isoTimestamp($0) } }

    public struct Filter: Sendable {
        public var state: String?
        public var provider: String?
        /// Only assets with a larger id: the keyset cursor.
        public var after: Int64
        public var limit: Int

        public init(state: String? = nil, provider: String? = nil, after: Int64 = 0, limit: Int = LookupStore.defaultPageSize) {
            self.state = state
            self.provider = provider
            self.after = after
            self.limit = limit
        }
    }

    /// Assets in id order after the cursor. Keyset pagination: rows inserted while a client pages through
    /// get larger ids, so they never shift the pages it has not read yet, and nothing repeats.
    ///
    /// Each combination of filters is its own statement text, and every page costs the same wherever the
    /// cursor is (about ten buffers for a page of 100): no OFFSET, no sort, a range of one index from the
    /// cursor.
    /// - Unfiltered: a range of the primary key. Sent prepared; its generic plan is that range too.
    /// - By state: a range of `assets_state_id_idx` (state, id). By provider: a range of
    ///   `assets_provider_id_idx` (provider, id) (migration 0022). Both with the other filter, when given,
    ///   checked on the way. Filtered pages are planned for their values every time (sent unprepared): a
    ///   prepared statement switches to a generic plan after five runs, and a generic plan cannot know that
    ///   `failed` is 1 % of the rows and `stored` 97 %, or that a provider has 0.1 % of them, so it walks the
    ///   primary key and filters, which for a rare value deep in the table reads tens of thousands of rows
    ///   (bench/scale: 93 ms for one page of failed assets at a million predictions; 103 ms for a provider
    ///   with 0.1 % of them, through `a.provider = $3`'s generic plan). Planning costs about 0.2 ms a page.
    ///   Both filters at once: the planner walks the index of one value and checks the other, or, when the
    ///   combination is much rarer than either, intersects both ranges past the cursor (a bitmap, then a
    ///   sort of the few rows left): the one case whose cost grows with the rows after the cursor.
    public func assets(_ filter: Filter, on connection: Connection) throws -> AssetPage {
        let limit = min(max(filter.limit, 1), Self.maxPageSize)
        var parameters: [any PQEncodable] = [filter.after, limit + 1]
        if let state = filter.state { parameters.append(state) }
        if let provider = filter.provider { parameters.append(provider) }
        let sql = Self.assetListStatements[filter.state != nil]![filter.provider != nil]!
        let filtered = filter.state != nil || filter.provider != nil
        let rows = filtered ? try connection.query(sql, parameters) : try connection.query(prepared: sql, parameters)
        var assets: [AssetView] = []
        for row in rows.prefix(limit) { assets.append(try Self.decodeAsset(row, from: 0)) }
        return AssetPage(assets: assets, nextAfter: rows.count > limit ? assets.last?.id : nil)
    }

    /// The listing's statement for one combination of filters: $1 the cursor, $2 the limit, then the state
    /// when filtered, then the provider when filtered.
    static func assetListSQL(byState: Bool, byProvider: Bool) -> String {
        var conditions = ["a.id > $1"]
        if byState { conditions.append("a.state = $3") }
        if byProvider { conditions.append("a.provider = $\(byState ? 4 : 3)") }
        return """
            SELECT \(assetColumns) FROM assets a
            WHERE \(conditions.joined(separator: " AND "))
            ORDER BY a.id LIMIT $2
            """
    }

    static let assetListStatements: [Bool: [Bool: String]] = [
        false: [false: assetListSQL(byState: false, byProvider: false), true: assetListSQL(byState: false, byProvider: true)],
        true: [false: assetListSQL(byState: true, byProvider: false), true: assetListSQL(byState: true, byProvider: true)],
    ]

    public func asset(id: Int64, on connection: Connection) throws -> AssetView? {
        guard let row = try connection.query(prepared: "SELECT \(Self.assetColumns) FROM assets a WHERE a.id = $1", [id]).first else {
            return nil
        }
        return try Self.decodeAsset(row, from: 0)
    }

    /// Puts a failed or expired asset back in the queue as if new (tries reset, due now, reason cleared) and
    /// wakes the workers. A spool file left by an earlier try is reused when still intact; otherwise the
    /// worker downloads again. Throws `assetNotFound` or `notRetryable`.
    public func retry(assetID: Int64, on connection: Connection) throws -> AssetView {
        try connection.transaction { tx in
            let updated = try tx.query(
                """
                UPDATE assets AS a SET state = 'pending', attempts = 0, next_attempt_at = now(), failure_reason = NULL,
                                       last_error = NULL, claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                                       updated_at = now()
                WHERE a.id = $1 AND a.state IN ('failed', 'expired')
                RETURNING \(Self.assetColumns)
                """, [assetID])
            guard let row = updated.first else {
                guard let current = try asset(id: assetID, on: tx) else {
                    throw LookupError(.assetNotFound, "no asset \(assetID)")
                }
                throw LookupError(.notRetryable, "asset \(assetID) is \(current.state); only failed or expired assets can be retried")
            }
            let asset = try Self.decodeAsset(row, from: 0)
            try AssetNotifications.send(for: [.init(provider: ProviderName(rawValue: asset.provider), id: asset.predictionID)], on: tx)
            return asset
        }
    }
}

extension LookupStore {
    /// Runs `body` on a connection of its own, for commands that run without a daemon and its pool.
    public func withConnection<T>(databaseURL: String, _ body: (LookupStore, Connection) throws -> T) throws -> T {
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        return try body(self, connection)
    }
}
