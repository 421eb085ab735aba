import Foundation
import PQ

/// `afterimage export`: one JSON line per prediction (metadata, and each output's key, size, SHA-256,
/// content type, state, optionally a presigned URL), for manifests and migrations.
///
/// Memory stays flat whatever the table's size: predictions are read in pages of `pageSize` in primary-key
/// order (keyset pagination on `(provider, id)`, each page one short statement, no transaction held open
/// while a slow reader drains stdout), each page's assets joined in the same statement, and every line is
/// handed to `write` as soon as it is made.
public struct Exporter: Sendable {
    public struct Filter: Sendable {
        /// By when the prediction was created at the provider (or, when it did not say, first seen here).
        public var since: Date?
        public var until: Date?
        public var provider: String?
        /// Seconds the presigned URLs of stored outputs last; nil: no URLs.
        public var presignSeconds: Int?
        public init(since: Date? = nil, until: Date? = nil, provider: String? = nil, presignSeconds: Int? = nil) {
            self.since = since
            self.until = until
            self.provider = provider
            self.presignSeconds = presignSeconds
        }
    }

    public var pageSize = 500
    let presigner: Presigner?

    public init(presigner: Presigner?) { self.presigner = presigner }

    static let pageSQL = """
        WITH page AS (
            SELECT p.provider, p.id, p.status, p.model, p.version, p.input::text AS input, p.error, p.source,
                   p.created_at, p.completed_at, p.first_seen_at, p.deleted_at
            FROM predictions p
            WHERE (p.provider, p.id) > ($1::text, $2::text)
              AND ($3::text IS NULL OR p.provider = $3)
              AND ($4::timestamptz IS NULL OR COALESCE(p.created_at, p.first_seen_at) >= $4)
              AND ($5::timestamptz IS NULL OR COALESCE(p.created_at, p.first_seen_at) < $5)
            ORDER BY p.provider, p.id
            LIMIT $6
        )
        SELECT p.provider, p.id, p.status, p.model, p.version, p.input, p.error, p.source, p.created_at, p.completed_at,
               p.first_seen_at, p.deleted_at,
               a.output_index, a.state, a.storage_key, a.size_bytes, a.sha256, a.content_type, a.stored_at, a.failure_reason
        FROM page p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
        ORDER BY p.provider, p.id, a.output_index, a.id
        """

    /// Writes every matching prediction, one line each; returns how many. `progress` gets the count after
    /// every page.
    public func run(
        _ filter: Filter, on connection: Connection, write: ([UInt8]) throws -> Void,
        progress: (Int) -> Void = { _ in }
    ) throws -> Int {
        var after = ("", "")
        var count = 0
        while true {
            let rows = try connection.query(prepared: Self.pageSQL, [after.0, after.1, filter.provider, filter.since, filter.until, pageSize])
            guard !rows.isEmpty else { break }
            var index = 0
            var predictions = 0
            let now = Date()
            while index < rows.count {
                let first = rows[index]
                let provider = try first.decode(0, as: String.self)
                let id = try first.decode(1, as: String.self)
                var json = JSONWriter(capacity: 1024)
                json.objectStart()
                json.field("provider", provider)
                json.field("id", id)
                json.field("status", try first.decode(2, as: String.self))
                json.field("model", try first.decode(3, as: String?.self))
                json.field("version", try first.decode(4, as: String?.self))
                json.key("input")
                json.raw(try first.decode(5, as: String?.self))
                json.field("error", try first.decode(6, as: String?.self))
                json.field("source", try first.decode(7, as: String?.self))
                json.field("created_at", LookupStore.isoTimestamp(try first.decode(8, as: String?.self)))
                json.field("completed_at", LookupStore.isoTimestamp(try first.decode(9, as: String?.self)))
                json.field("first_seen_at", LookupStore.isoTimestamp(try first.decode(10, as: String.self)) as String)
                json.field("deleted_at", LookupStore.isoTimestamp(try first.decode(11, as: String?.self)))
                json.key("outputs")
                json.arrayStart()
                // A prediction's rows are adjacent (ordered by it first).
                while index < rows.count, try rows[index].decode(0, as: String.self) == provider, try rows[index].decode(1, as: String.self) == id {
                    let row = rows[index]
                    index += 1
                    guard !row.isNull(12) else { continue }
                    let state = try row.decode(13, as: String.self)
                    let key = try row.decode(14, as: String?.self)
                    json.objectStart()
                    json.field("index", try row.decode(12, as: Int.self))
                    json.field("state", state)
                    json.field("key", key)
                    json.field("size", try row.decode(15, as: Int64?.self))
                    json.field("sha256", try row.decode(16, as: String?.self))
                    json.field("content_type", try row.decode(17, as: String?.self))
                    json.field("stored_at", LookupStore.isoTimestamp(try row.decode(18, as: String?.self)))
                    json.field("failure_reason", try row.decode(19, as: String?.self))
                    if let presigner, let seconds = filter.presignSeconds, state == AssetState.stored.rawValue, let key {
                        let signed = presigner.sign(key: key, expires: seconds, now: now)
                        json.field("url", signed.url)
                        json.field("url_expires_at", signed.expiresAt.rfc3339())
                    }
                    json.objectEnd()
                }
                json.arrayEnd()
                json.objectEnd()
                var line = json.bytes
                line.append(UInt8(ascii: "\n"))
                try write(line)
                after = (provider, id)
                predictions += 1
            }
            count += predictions
            progress(count)
            // A page shorter than asked for was the last one.
            if predictions < pageSize { break }
        }
        return count
    }
}

extension Exporter {
    /// The same on a connection of its own (the command); `finish` runs after the last line.
    public func run(
        _ filter: Filter, settings: Settings, write: ([UInt8]) throws -> Void, progress: (Int) -> Void,
        finish: () throws -> Void
    ) throws -> Int {
        let connection = try Connection.connect(url: try settings.requireDatabaseURL(), limits: settings.database.sessionLimits)
        defer { connection.close() }
        let count = try run(filter, on: connection, write: write, progress: progress)
        try finish()
        return count
    }
}

/// Dates as the lifecycle commands take them: RFC 3339 (`2026-11-01T00:00:00Z`), a day (`2026-11-01`, UTC
/// midnight), or a duration back from now (`30d`, `12h`, `90m`; see `DurationText`).
public enum DateArgument {
    public static func parse(_ text: String, now: Date = Date()) -> Date? {
        if let date = Date(rfc3339: text) { return date }
        if text.utf8.count == 10, let date = Date(rfc3339: text + "T00:00:00Z") { return date }
        if let seconds = DurationText.seconds(text) { return now.addingTimeInterval(-TimeInterval(seconds)) }
        return nil
    }
}
