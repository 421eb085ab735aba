import Curl
import Foundation
import Logging

/// The archiver's one switch on where bytes come from, taken when the spool holds no complete copy.
extension Archiver {
    func fetch(_ job: ArchiveJob, session: CurlSession, shouldAbort: @escaping @Sendable () -> Bool,
               logger log: Logger) throws -> (path: String, sha256: String, size: Int64, contentType: String?) {
        switch job.sourceKind {
        case .url:
            return try download(job, session: session, shouldAbort: shouldAbort)
        case .inline:
            return try respoolInline(job, logger: log)
        case .stabilityResult:
            guard let stability else { throw ArchiveError(.transport, "no Stability source is configured") }
            let fetched = try stability.fetch(job, spool: spool, session: session, policy: policy(), shouldAbort: shouldAbort)
            let recorded: Bool
            do {
                recorded = try pool.withConnection { try queue.recordResult(job, finishReason: fetched.finishReason, seed: fetched.seed, on: $0) }
            } catch {
                spool.remove(fetched.path)
                throw error
            }
            guard recorded else {
                spool.remove(fetched.path)
                throw ArchiveError(.leaseLost, "the lease was lost while fetching")
            }
            if fetched.finishReason == "CONTENT_FILTERED" { log.notice("Stability filtered this result; keeping it, flagged") }
            return (fetched.path, fetched.sha256, fetched.size, fetched.contentType)
        }
    }

    /// Inline bytes are never downloaded: their spool file was the fast copy, and the recorded delivery
    /// body is the durable one. A missing spool file (another machine's spool, a lost disk) is an
    /// incident worth an error in the log; the bytes are decoded again from the delivery, and only when
    /// that is gone too does the asset fail, permanently and saying why. (A Replicate data: output recorded
    /// without a spool file, by a reconciler without access to the spool, is decoded here the first time.)
    func respoolInline(_ job: ArchiveJob, logger log: Logger) throws -> (path: String, sha256: String, size: Int64, contentType: String?) {
        if job.spoolPath == nil {
            // A Replicate data: output recorded without a spool file, or an asset whose spool file the sweep
            // removed once it had failed (it was retried by hand since).
            log.info(job.provider == ReplicateIntake.provider ? "decoding a data: output from the recorded delivery"
                                                               : "decoding inline bytes from the recorded delivery")
        } else {
            log.error("the spool file of an inline result is missing here; decoding it again from the recorded delivery",
                      metadata: ["spool_path": "\(job.spoolPath ?? "none")"])
        }
        guard let (body, pointer) = try pool.withConnection({ try queue.inlineDelivery(assetID: job.assetID, on: $0) }) else {
            throw ArchiveError(.inlineLost, "inline result: its spool file is missing and no recorded delivery holds it")
        }
        let spooled: InlineSpooler.Spooled
        do {
            spooled = try body.withUnsafeBufferPointer { bytes in
                job.provider == ReplicateIntake.provider
                    ? try respoolDataOutput(pointer: pointer, body: bytes, assetID: job.assetID, claim: job.claimToken)
                    : try respoolStabilityArtifact(pointer: pointer, body: bytes, assetID: job.assetID, claim: job.claimToken)
            }
        } catch let error as ArchiveError {
            throw error
        } catch let error as InlineSpooler.InvalidBase64 where job.provider == ReplicateIntake.provider {
            throw ArchiveError(.inlineLost, "malformed data: URI at \(pointer): \(error.reason)")
        } catch {
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery cannot be decoded again: \(error)")
        }
        if let expected = job.spoolSHA256, expected != spooled.sha256 {
            spool.remove(spooled.path)
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery decodes to other bytes than were acknowledged")
        }
        return (spooled.path, spooled.sha256, spooled.size, spooled.contentType)
    }

    private func respoolStabilityArtifact(pointer: String, body: UnsafeBufferPointer<UInt8>, assetID: Int64, claim: UUID) throws -> InlineSpooler.Spooled {
        let parsed = try StabilityBody.parse(body)
        // A pointer qualified as `/image@<delivery>` (a reused prediction_id) names `/image` of its body.
        let inBody = pointer.split(separator: "@", maxSplits: 1).first.map(String.init) ?? pointer
        guard let artifact = parsed.artifacts.first(where: { $0.pointer == inBody }) else {
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery has nothing at \(pointer)")
        }
        // The spooler closes (and on failure removes) the file whatever happens.
        return try InlineSpooler.spool(artifact, body: body, writer: try spool.writer(assetID: assetID, claim: claim))
    }

    /// A Replicate data: output, found again at its pointer in the recorded webhook body.
    private func respoolDataOutput(pointer: String, body: UnsafeBufferPointer<UInt8>, assetID: Int64, claim: UUID) throws -> InlineSpooler.Spooled {
        guard let (span, _) = ReplicatePrediction.dataOutput(at: pointer, in: body) else {
            throw ArchiveError(.inlineLost, "data: output: the recorded delivery has none at \(pointer) (it came with another event)")
        }
        return try ReplicateIntake.decodeDataOutput(span, pointer: pointer, body: body, writer: try spool.writer(assetID: assetID, claim: claim))
    }
}
