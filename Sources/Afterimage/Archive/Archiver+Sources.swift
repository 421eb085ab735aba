import Curl
import Foundation
import Logging

/// The archiver's one switch on where bytes come from, taken when the spool holds no complete copy.
extension Archiver {
    func fetch(_ job: ArchiveJob, session: CurlSession, shouldAbort: @escaping @Sendable () -> Bool, logger log: Logger) throws -> Staged {
        switch job.sourceKind {
        case .url:
            return try download(job, session: session, shouldAbort: shouldAbort)
        case .inline:
            return Staged(try redecodeInline(job, logger: log))
        case .stabilityResult:
            guard let source = providers[job.provider]?.resultSource else {
                throw ArchiveError(.transport, "\(job.provider) has no result source configured")
            }
            let fetched = try source.poll(job, spool: spool, session: session, policy: policy(), shouldAbort: shouldAbort)
            let recorded: Bool
            do {
                recorded = try pool.withConnection { try queue.recordResult(job, finishReason: fetched.finishReason, seed: fetched.seed, on: $0) }
            } catch {
                spool.remove(fetched.spooled.path)
                throw error
            }
            guard recorded else {
                spool.remove(fetched.spooled.path)
                throw ArchiveError(.leaseLost, "the lease was lost while fetching")
            }
            if fetched.finishReason == "CONTENT_FILTERED" { log.notice("the provider filtered this result; keeping it, flagged") }
            return Staged(fetched.spooled)
        }
    }

    /// Inline bytes are never downloaded: their spool file was the fast copy, and the recorded delivery
    /// body is the durable one. A missing spool file (another machine's spool, a lost disk) is an
    /// incident worth an error in the log; the provider decodes the bytes again from the delivery, and only
    /// when that is gone too does the asset fail, permanently and saying why. (An inline output recorded
    /// without a spool file, by a reconciler without access to the spool, is decoded here the first time.)
    func redecodeInline(_ job: ArchiveJob, logger log: Logger) throws -> Spooled {
        if job.spoolPath == nil {
            // A data: output recorded without a spool file (by `afterimage reconcile`, which cannot reach the
            // daemon's spool), or an asset whose spool file the sweep removed once it had failed (it was
            // retried by hand since): expected, not an incident.
            log.info(
                job.sourceURL.hasPrefix("data:")
                    ? "decoding a data: output from the recorded delivery"
                    : "decoding inline bytes from the recorded delivery")
        } else {
            log.error(
                "the spool file of an inline result is missing here; decoding it again from the recorded delivery",
                metadata: ["spool_path": "\(job.spoolPath ?? "none")"])
        }
        guard let provider = providers[job.provider] else {
            throw ArchiveError(.inlineLost, "inline result of \(job.provider), which this daemon does not serve")
        }
        guard let (body, pointer) = try pool.withConnection({ try queue.inlineDelivery(assetID: job.assetID, on: $0) }) else {
            throw ArchiveError(.inlineLost, "inline result: its spool file is missing and no recorded delivery holds it")
        }
        let spooled: Spooled
        do {
            spooled = try body.withUnsafeBufferPointer { bytes in
                try provider.redecodeInline(pointer: pointer, body: bytes, into: try spool.writer(assetID: job.assetID, claim: job.claimToken))
            }
        } catch let error as ArchiveError {
            throw error
        } catch {
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery cannot be decoded again: \(error)")
        }
        if let expected = job.spoolSHA256, expected != spooled.sha256 {
            spool.remove(spooled.path)
            throw ArchiveError(.inlineLost, "inline result: the recorded delivery decodes to other bytes than were acknowledged")
        }
        return spooled
    }
}
