import Crypto
import Foundation
import Logging
import PQ
import Primitives

/// One schema change, shipped inside the binary (see scripts/embed-migrations.sh).
public struct Migration: Sendable {
    public let name: String
    public let sql: String
    /// SHA-256 of the SQL as shipped: an applied file that later changes is refused, because the
    /// database would no longer match what the code believes the schema to be.
    public var checksum: String { Hex.encode(SHA256.hash(data: Data(sql.utf8))) }

    public init(name: String, sql: String) {
        self.name = name
        self.sql = sql
    }

    /// The migrations this build carries, in the order they apply.
    public static var bundled: [Migration] { EmbeddedMigrations.all.sorted { $0.name < $1.name } }
}

public struct MigrationError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case checksumMismatch = "checksum_mismatch"
        case database
        /// `schema_migrations` lists migrations this build does not carry: a newer version migrated the
        /// database, and this one does not know the schema it left.
        case unknownMigrations = "unknown_migrations"
        /// Another process held the migration lock for the whole bounded wait.
        case lockBusy = "lock_busy"
    }
    public let code: Code
    public let message: String
    /// The database's own error, when there was one.
    public let cause: PQError?

    public init(code: Code, message: String, cause: PQError? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The database was away or busy (no connection, a lock or statement deadline): trying again later
    /// may succeed. Anything else (a changed migration, a migration the server refuses) will not fix
    /// itself.
    public var isTransient: Bool { code == .lockBusy || (cause?.isUnavailable ?? false) }

    public var description: String { "migration \(code.rawValue): \(message)" }
}

/// Applies pending migrations, each once and each in its own transaction, under a session advisory lock
/// so that several daemons starting together against one database take turns instead of racing.
public struct Migrator: Sendable {
    /// Arbitrary but fixed: every Afterimage process must agree on it ("Afterimg" in ASCII).
    public static let advisoryLockKey: Int64 = 0x4166_7465_7269_6D67

    public let migrations: [Migration]
    /// The longest wait for the migration lock (another process migrating): then `lockBusy`, which the
    /// daemon retries like an outage and `afterimage migrate` reports.
    public var lockWait: Duration
    /// How often the lock is tried while another process holds it.
    static let lockPollInterval: Duration = .milliseconds(200)

    public init(migrations: [Migration] = Migration.bundled, lockWait: Duration = .seconds(30)) {
        self.migrations = migrations
        self.lockWait = lockWait
    }

    /// Returns the names it applied (empty when the schema was current). `limits` bound the session's
    /// waits, except that a migration's own statements may run as long as they need (statement_timeout
    /// is lifted for them; lock_timeout is kept, so a migration waiting for a busy table gives up rather
    /// than queueing every other query behind its lock).
    @discardableResult
    public func migrate(databaseURL: String, limits: SessionLimits = SessionLimits(), logger: Logger) throws -> [String] {
        let connection: Connection
        do {
            connection = try Connection.connect(url: databaseURL, limits: limits)
        } catch {
            throw MigrationError(code: .database, message: "cannot connect: \(error)", cause: error)
        }
        defer { connection.close() }
        return try migrate(on: connection, logger: logger)
    }

    /// The same, on a session the caller opened (and closes). `keepWaiting` is asked between tries of the
    /// lock (a caller's heartbeat and stop flag); false gives up at once with `lockBusy`.
    @discardableResult
    public func migrate(on connection: Connection, logger: Logger, keepWaiting: () -> Bool = { true }) throws -> [String] {
        try takeLock(on: connection, keepWaiting: keepWaiting)
        defer { _ = try? connection.query("SELECT pg_advisory_unlock($1)", [Self.advisoryLockKey]) }
        do {
            try connection.execute("SET statement_timeout = 0")
        } catch let error as PQError {
            throw MigrationError(code: .database, message: "\(error)", cause: error)
        }
        return try applyPending(on: connection, logger: logger)
    }

    /// Takes the session advisory lock with a bounded wait: `pg_try_advisory_lock` every 200 ms, never the
    /// blocking `pg_advisory_lock`, whose wait only `lock_timeout` bounds (`database.lock_timeout_ms = 0`
    /// would make it wait for ever behind another process's stuck migration).
    func takeLock(on connection: Connection, keepWaiting: () -> Bool) throws {
        let deadline = ContinuousClock.now + lockWait
        while true {
            let taken: Bool
            do {
                taken = try connection.query("SELECT pg_try_advisory_lock($1)", [Self.advisoryLockKey]).first?.decode(0, as: Bool.self) ?? false
            } catch {
                throw MigrationError(code: .database, message: "cannot take the migration lock: \(error)", cause: error)
            }
            if taken { return }
            guard ContinuousClock.now < deadline, keepWaiting() else {
                throw MigrationError(
                    code: .lockBusy,
                    message: "another process holds the migration lock"
                        + (lockHolder(on: connection).map { " (PostgreSQL backend pid \($0))" } ?? "")
                        + "; gave up after \(lockWait)")
            }
            Thread.sleep(forTimeInterval: Self.lockPollInterval.timeInterval)
        }
    }

    /// The backend holding the migration lock, for the error message (a bigint key is split into
    /// `classid` (high half) and `objid` (low half) in `pg_locks`). Advisory locks belong to one database
    /// but `pg_locks` lists the whole cluster's: without the `database` condition the message could name a
    /// process migrating another database of the same cluster.
    private func lockHolder(on connection: Connection) -> Int32? {
        let key = UInt64(bitPattern: Self.advisoryLockKey)
        let rows = try? connection.query(
            """
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            LIMIT 1
            """, [Int64(key >> 32), Int64(key & 0xFFFF_FFFF)])
        return try? rows?.first?.decode(0, as: Int32.self)
    }

    /// Refuses a database that has applied migrations this build does not carry (a newer version migrated
    /// it): this build would run against a schema it does not know. Also used with `database.migrate`
    /// false, where nothing is applied. A database without `schema_migrations` passes.
    public func checkKnown(on connection: Connection) throws {
        do {
            guard try connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL").first?.decode(0, as: Bool.self) == true else { return }
            let applied = try connection.query("SELECT name FROM schema_migrations").map { try $0.decode(0, as: String.self) }
            try refuseUnknown(applied)
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(code: .database, message: "\(error)", cause: error as? PQError)
        }
    }

    private func refuseUnknown(_ applied: [String]) throws {
        let known = Set(migrations.map(\.name))
        let unknown = applied.filter { !known.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw MigrationError(
                code: .unknownMigrations,
                message:
                    "the database has migrations this build does not know: \(unknown.joined(separator: ", ")) (a newer version of Afterimage migrated it); run that version or a newer one"
            )
        }
    }

    private func applyPending(on connection: Connection, logger: Logger) throws -> [String] {
        do {
            try connection.executeScript(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name       text PRIMARY KEY,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            var applied: [String: String] = [:]
            for row in try connection.query("SELECT name, checksum FROM schema_migrations") {
                applied[try row.decode(0, as: String.self)] = try row.decode(1, as: String.self)
            }
            // Before anything is applied: a schema from a newer build is not changed further by this one.
            try refuseUnknown(Array(applied.keys))
            var appliedNow: [String] = []
            for migration in migrations {
                if let checksum = applied[migration.name] {
                    guard checksum == migration.checksum else {
                        throw MigrationError(
                            code: .checksumMismatch,
                            message:
                                "\(migration.name) was applied with checksum \(checksum) but this build carries \(migration.checksum); applied migrations must never change, add a new one instead"
                        )
                    }
                    continue
                }
                try connection.transaction { tx in
                    try tx.executeScript(migration.sql)
                    try tx.query("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", [migration.name, migration.checksum])
                }
                logger.info("migration applied", metadata: ["name": "\(migration.name)"])
                appliedNow.append(migration.name)
            }
            return appliedNow
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(code: .database, message: "\(error)", cause: error as? PQError)
        }
    }
}
