import Foundation
import PQ

/// Where an asset's bytes come from (`assets.source_kind`).
public enum AssetSourceKind: String, Sendable {
    /// Downloaded from `source_url`.
    case url
    /// Decoded from the webhook body into the spool before the delivery was acknowledged. Never
    /// downloaded: `source_url` is only a descriptive `inline:` marker.
    case inline
    /// An async Stability generation, polled at `source_url` with the API key.
    case stabilityResult = "stability_result"
}

/// Queue writes for sources other than a plain download; guarded by the claim token like the rest.
extension ArchiveQueue {
    /// Polls again at `next` without counting this try: an unfinished generation is not a failure, and a
    /// long video must not use up the tries meant for real errors.
    public func reschedulePoll(_ job: ArchiveJob, at next: Date, note: String, on connection: Connection) throws -> Bool {
        try connection.execute(
            """
            UPDATE assets SET state = 'pending', next_attempt_at = $3, last_error = $4, attempts = greatest(attempts - 1, 0),
                              claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE id = $1 AND claim_token = $2
            """, [job.assetID, job.claimToken, next, note]) == 1
    }

    /// Records what Stability said about a polled result, and that the generation is done.
    public func recordResult(_ job: ArchiveJob, finishReason: String?, seed: Int64?, on connection: Connection) throws -> Bool {
        try connection.transaction { tx in
            guard
                try tx.execute(
                    """
                    UPDATE assets SET finish_reason = COALESCE($3, finish_reason), seed = COALESCE($4, seed), updated_at = now()
                    WHERE id = $1 AND claim_token = $2
                    """, [job.assetID, job.claimToken, finishReason, seed]) == 1
            else { return false }
            try tx.execute(
                """
                UPDATE predictions SET status = 'succeeded', completed_at = COALESCE(completed_at, now()), updated_at = now()
                WHERE provider = $1 AND id = $2 AND status IN ('starting', 'processing')
                """, [job.provider, job.predictionID])
            return true
        }
    }

    /// The recorded webhook body an inline asset was decoded from, and the asset's pointer in it, for
    /// when its spool file is gone.
    public func inlineDelivery(assetID: Int64, on connection: Connection) throws -> (body: [UInt8], pointer: String)? {
        try connection.query(
            """
            SELECT d.body, a.pointer FROM assets a JOIN deliveries d ON d.id = a.delivery_id WHERE a.id = $1
            """, [assetID]
        ).first.map { (try $0.decode(0, as: [UInt8].self), try $0.decode(1, as: String.self)) }
    }
}
