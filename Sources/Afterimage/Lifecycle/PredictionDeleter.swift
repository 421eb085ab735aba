import Foundation
import Glibc
import Logging
import PQ
import S3

/// Deletes a prediction's data on demand (`DELETE /v1/predictions/{provider}/{id}`, `afterimage delete`) and
/// for object retention, keeping a tombstone.
///
/// Two steps. First, in one transaction: the prediction keeps its row with `deleted_at` set and its input
/// and output cleared; every asset goes to the terminal state `deleted` (size, SHA-256 and key kept; claim
/// token, lease and spool path cleared); every raw delivery body of the prediction is replaced by its
/// SHA-256 and size; the change is announced (NOTIFY), so lookup caches forget it. From that commit on, no
/// worker can record anything for those assets: every write of a job is guarded by its claim token, which
/// is gone, and its lease renewal fails, which aborts a running transfer. Then the purge: the recorded
/// spool files, every object under the prediction's key prefix `{prefix}{provider}/{id}/` (and every key
/// its assets recorded), and every multipart upload left under that prefix.
///
/// A transfer that was in flight may still complete an upload between the purge's listing and its own
/// failed record; the worker removes that object itself (`Archiver`), and `purge_due_at` (two leases
/// later) has the retention loop purge once more in case it died first. A purge the bucket refused (an
/// outage) stays due the same way, so the delete still answers with the tombstone in place.
public struct PredictionDeleter: Sendable {
    public let storage: S3Client
    public let layout: StorageLayout
    /// The daemon's spool; nil for a command that cannot reach it (the spool sweep then removes the files).
    public let spool: Spool?
    /// `workers.lease_seconds`: how long a fenced transfer may take to notice it.
    public let leaseSeconds: Int
    let logger: Logger

    public init(storage: S3Client, layout: StorageLayout, spool: Spool?, leaseSeconds: Int, logger: Logger) {
        self.storage = storage
        self.layout = layout
        self.spool = spool
        self.leaseSeconds = leaseSeconds
        self.logger = logger
    }

    public struct Outcome: Sendable, Equatable {
        /// The prediction was a tombstone already (a repeated delete).
        public var alreadyDeleted = false
        /// Assets that became `deleted` now.
        public var assets = 0
        /// Of those, transfers that were running and are now fenced.
        public var fencedTransfers = 0
        public var bodiesCleared = 0
        public var objectsRemoved = 0
        public var uploadsAborted = 0
        public var spoolFilesRemoved = 0
        /// The objects are not known to be all gone yet (a fenced transfer, or the bucket refused): the
        /// retention loop purges again when due.
        public var purgePending = false
        public init() {}
    }

    /// Deletes `provider/id`; nil when there is no such prediction. The tombstone is committed before
    /// anything is removed from the bucket, so a failure half-way leaves it deleted and due for a purge.
    public func delete(provider: ProviderName, id: String, on connection: Connection) throws -> Outcome? {
        var outcome = Outcome()
        var spoolPaths: [String] = []
        var assetIDs: [Int64] = []
        var keys: [String] = []
        let found = try connection.transaction { tx -> Bool in
            guard
                let row = try tx.query(
                    """
                    SELECT deleted_at IS NOT NULL FROM predictions WHERE provider = $1 AND id = $2 FOR UPDATE
                    """, [provider, id]
                ).first
            else { return false }
            outcome.alreadyDeleted = try row.decode(0, as: Bool.self)
            let marked = try tx.query(
                """
                WITH old AS (
                    SELECT id, state, spool_path, storage_key FROM assets
                    WHERE provider = $1 AND prediction_id = $2 AND state <> 'deleted'
                    FOR UPDATE
                )
                UPDATE assets AS a SET state = 'deleted', claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                                       spool_path = NULL, last_error = NULL, updated_at = now()
                FROM old WHERE a.id = old.id
                RETURNING old.id, old.state, old.spool_path, old.storage_key
                """, [provider, id])
            for row in marked {
                assetIDs.append(try row.decode(0, as: Int64.self))
                if try row.decode(1, as: String.self) == AssetState.inFlight.rawValue { outcome.fencedTransfers += 1 }
                if let path = try row.decode(2, as: String?.self) { spoolPaths.append(path) }
                if let key = try row.decode(3, as: String?.self) { keys.append(key) }
            }
            outcome.assets = marked.count
            outcome.bodiesCleared = try tx.execute(
                """
                UPDATE deliveries SET body_sha256 = encode(sha256(body), 'hex'), body_size = octet_length(body),
                                      body = ''::bytea, body_pruned_at = now()
                WHERE provider = $1 AND body_pruned_at IS NULL
                  AND (prediction_id = $2 OR id IN (SELECT delivery_id FROM assets
                                                    WHERE provider = $1 AND prediction_id = $2 AND delivery_id IS NOT NULL))
                """, [provider, id])
            // A fenced transfer may still finish an upload: purge again once its lease has surely run out.
            let purgeDelay = outcome.fencedTransfers > 0 ? 2 * leaseSeconds : 0
            try tx.execute(
                """
                UPDATE predictions SET deleted_at = COALESCE(deleted_at, now()), input = NULL, output = NULL,
                                       purge_due_at = CASE WHEN deleted_at IS NULL OR $4 THEN now() + make_interval(secs => $3)
                                                           ELSE purge_due_at END,
                                       updated_at = now()
                WHERE provider = $1 AND id = $2
                """, [provider, id, purgeDelay, outcome.assets > 0])
            try AssetNotifications.send(for: [.init(provider: provider, id: id)], on: tx)
            return true
        }
        guard found else { return nil }
        if let spool {
            for path in Set(spoolPaths + assetIDs.map { spool.finalPath(assetID: $0) }) {
                // Not `Spool.remove`: a fenced worker may hold a claim on the file, and it releases its own.
                if let resolved = spool.resolve(path), unlink(resolved) == 0 { outcome.spoolFilesRemoved += 1 }
            }
        }
        let needsPurge =
            try connection.query(
                """
                SELECT purge_due_at IS NOT NULL FROM predictions WHERE provider = $1 AND id = $2
                """, [provider, id]
            ).first?.decode(0, as: Bool.self) ?? false
        if needsPurge || outcome.assets > 0 {
            do {
                let purged = try purge(provider: provider, id: id, keys: keys)
                outcome.objectsRemoved = purged.objects
                outcome.uploadsAborted = purged.uploads
                // Done for good unless a fenced transfer may still upload (then the due time stays).
                try connection.execute(
                    """
                    UPDATE predictions SET purge_due_at = NULL WHERE provider = $1 AND id = $2 AND purge_due_at <= now()
                    """, [provider, id])
            } catch {
                logger.warning(
                    "delete: the bucket refused the purge; the retention loop tries again",
                    metadata: ["prediction": "\(provider)/\(id)", "error": "\(error)"])
            }
        }
        outcome.purgePending =
            try connection.query(
                """
                SELECT purge_due_at IS NOT NULL FROM predictions WHERE provider = $1 AND id = $2
                """, [provider, id]
            ).first?.decode(0, as: Bool.self) ?? false
        AfterimageMetrics.objectsDeleted(outcome.objectsRemoved)
        return outcome
    }

    /// The same on a connection of its own, for commands that run without a daemon and its pool.
    public func delete(provider: ProviderName, id: String, settings: Settings) throws -> Outcome? {
        let connection = try Connection.connect(url: try settings.requireDatabaseURL(), limits: settings.database.sessionLimits)
        defer { connection.close() }
        return try delete(provider: provider, id: id, on: connection)
    }

    public struct Purged: Sendable, Equatable {
        public var objects = 0
        public var uploads = 0
    }

    /// Removes every object under the prediction's prefix and the given keys, and aborts its unfinished
    /// multipart uploads. Deleting a key that is gone already succeeds, so a purge can always run again.
    public func purge(provider: ProviderName, id: String, keys: [String] = []) throws -> Purged {
        let prefix = "\(layout.prefix)\(provider)/\(id)/"
        var purged = Purged()
        let listed = Set(try storage.allKeys(prefix: prefix))
        for key in listed {
            try storage.deleteObject(key: key)
            purged.objects += 1
        }
        // Keys recorded elsewhere (written under another `storage.prefix`): only those that still exist count.
        for key in Set(keys).subtracting(listed) {
            guard try storage.headObject(key: key) != nil else { continue }
            try storage.deleteObject(key: key)
            purged.objects += 1
        }
        for upload in try storage.listMultipartUploads(prefix: prefix) {
            try storage.abortMultipartUpload(key: upload.key, uploadId: upload.uploadId)
            purged.uploads += 1
        }
        return purged
    }

    /// Purges the tombstones whose purge is due (a fenced transfer's lease has run out, or an earlier purge
    /// failed); at most `limit` of them. Returns how many objects went.
    public func purgeDue(limit: Int = 50, on connection: Connection) throws -> Int {
        var removed = 0
        for row in try connection.query(
            """
            SELECT provider, id FROM predictions WHERE purge_due_at <= now() ORDER BY purge_due_at LIMIT $1
            """, [limit])
        {
            let provider = try row.decode(0, as: ProviderName.self)
            let id = try row.decode(1, as: String.self)
            let keys = try connection.query(
                """
                SELECT storage_key FROM assets WHERE provider = $1 AND prediction_id = $2 AND storage_key IS NOT NULL
                """, [provider, id]
            ).map { try $0.decode(0, as: String.self) }
            let purged = try purge(provider: provider, id: id, keys: keys)
            removed += purged.objects
            try connection.execute(
                """
                UPDATE predictions SET purge_due_at = NULL WHERE provider = $1 AND id = $2 AND purge_due_at <= now()
                """, [provider, id])
        }
        AfterimageMetrics.objectsDeleted(removed)
        return removed
    }
}
