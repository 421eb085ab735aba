import Curl
import Foundation
import Logging
import PQ
import Primitives
import S3

/// Carries one claimed asset from its source to the bucket: download into the spool (hashing as the bytes
/// stream), upload (single PUT or multipart), check, record. Synchronous: it runs on a worker thread.
public struct Archiver: Sendable {
    public let queue: ArchiveQueue
    public let pool: Pool
    public let storage: S3Client
    public let spool: Spool
    public let layout: StorageLayout
    public let policy: @Sendable () -> FetchPolicy
    public let retryPolicy: RetryPolicy
    /// The credential of a provider's assets (read per job, so a reload can change it); it is sent only to
    /// the hosts it names, decided hop by hop.
    public let sourceCredential: @Sendable (ProviderName) -> SourceCredential?
    public let multipartThreshold: Int64
    public let partSize: Int64
    public let partsInFlight: Int
    /// Every provider whose assets may be queued: they decode their inline outputs again and poll their
    /// results (see `Provider`).
    public let providers: [ProviderName: any Provider]
    let logger: Logger

    public init(
        queue: ArchiveQueue, pool: Pool, storage: S3Client, spool: Spool, layout: StorageLayout,
        policy: @escaping @Sendable () -> FetchPolicy, retryPolicy: RetryPolicy = RetryPolicy(),
        sourceCredential: @escaping @Sendable (ProviderName) -> SourceCredential?,
        multipartThreshold: Int64 = 64 << 20, partSize: Int64 = 8 << 20, partsInFlight: Int = 4,
        providers: [any Provider] = [], logger: Logger
    ) {
        self.queue = queue
        self.pool = pool
        self.storage = storage
        self.spool = spool
        self.layout = layout
        self.policy = policy
        self.retryPolicy = retryPolicy
        self.sourceCredential = sourceCredential
        self.multipartThreshold = multipartThreshold
        self.partSize = max(5 << 20, partSize)
        self.partsInFlight = max(1, partsInFlight)
        self.providers = Dictionary(providers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.logger = logger
    }

    /// Runs the job to an outcome recorded in the table. `shouldAbort` is polled during transfers (lease lost,
    /// drain); on abort the job is left for its lease to be released by the caller.
    public func process(_ job: ArchiveJob, session: CurlSession, shouldAbort: @escaping @Sendable () -> Bool) {
        var log = logger
        log[metadataKey: "asset"] = "\(job.assetID)"
        log[metadataKey: "prediction"] = "\(job.provider)/\(job.predictionID)"
        // What this job may have left in the spool and the bucket, for when it turns out to be deleted.
        var spooledPath: String?
        var uploadedKey: String?
        do {
            let staged: Staged
            // The recorded path is normalised and must lie in the spool (`resolve`) before it is read.
            if let path = job.spoolPath.flatMap(spool.resolve), let sha = job.spoolSHA256, let size = job.spoolSize,
                spool.isIntact(path: path, size: size, sha256: sha)
            {
                staged = Staged(Spooled(path: path, sha256: sha, size: size, contentType: job.contentType))
                spooledPath = path
                log.info("uploading from spool left by an earlier try")
            } else {
                staged = try fetch(job, session: session, shouldAbort: shouldAbort, logger: log)
                if let spooled = staged.spooled {
                    spooledPath = spooled.path
                    try recordNewSpool(job, spooled)
                }
            }
            let key = layout.key(
                provider: job.provider, predictionID: job.predictionID, index: job.outputIndex,
                contentType: staged.contentType, sourceURL: job.sourceURL)
            let uploadStarted = ContinuousClock.now
            let etag: String?
            do {
                if shouldAbort() { throw ArchiveError(.aborted, "stopping") }
                uploadedKey = key
                etag = try upload(
                    key: key, body: staged.body, size: staged.size, sha256: staged.sha256, md5: staged.md5,
                    contentType: staged.contentType, sourceURL: job.sourceURL, shouldAbort: shouldAbort)
            } catch {
                // Held bytes go to the spool now, so the next try uploads them without downloading again.
                if case .memory(let bytes) = staged.location { spooledPath = spill(bytes, of: staged, job, logger: log) }
                throw error
            }
            AfterimageMetrics.transfer(.upload, provider: job.provider, bytes: staged.size, since: uploadStarted)
            let stored = ArchiveQueue.Stored(key: key, size: staged.size, sha256: staged.sha256, contentType: staged.contentType, etag: etag)
            guard let timing = try pool.withConnection({ try queue.markStored(job, stored, on: $0) }) else {
                if removeIfDeleted(job, key: key, spoolPath: spooledPath, logger: log) { return }
                // Another owner has the job now; it will store the same bytes under the same key.
                log.warning("stored, but the lease was lost before recording; the new owner records it")
                return
            }
            if let spooledPath { spool.remove(spooledPath) }
            AfterimageMetrics.stored(provider: job.provider, timing)
            log.info("stored", metadata: ["key": "\(key)", "bytes": "\(staged.size)", "sha256": "\(staged.sha256)"])
        } catch let error as ArchiveError {
            if error.code == .leaseLost || error.code == .aborted,
                removeIfDeleted(job, key: uploadedKey, spoolPath: spooledPath, logger: log)
            {
                return
            }
            settle(job, error: error, logger: log)
        } catch {
            settle(job, error: ArchiveError(.transport, "\(error)"), logger: log)
        }
    }

    /// Records a spool file this try has just written, so a failed upload does not mean a second download.
    /// The file stays claimed (no sweep takes it) until the row refers to it. Throws `.leaseLost` when the
    /// job is no longer this worker's.
    func recordNewSpool(_ job: ArchiveJob, _ spooled: Spooled) throws {
        let recorded: Bool
        do {
            recorded = try pool.withConnection { try queue.recordSpool(job, spooled, on: $0) }
        } catch {
            spool.release(spooled.path)
            throw error
        }
        spool.release(spooled.path)
        guard recorded else { throw ArchiveError(.leaseLost, "the lease was lost while downloading") }
    }

    /// Writes a held download whose upload did not finish to the spool and records it, as a download that
    /// had been spooled from the start would be: the next try uploads it without downloading again, even
    /// when the provider has deleted the source by then. Returns the spool path, or nil when nothing was
    /// recorded (the disk refused it, or the job is no longer this worker's: its file is removed then);
    /// the next try downloads again, within the deadline `heldDownloadMargin` left room for.
    func spill(_ bytes: [UInt8], of staged: Staged, _ job: ArchiveJob, logger log: Logger) -> String? {
        let spooled: Spooled
        do {
            let writer = try spool.writer(assetID: job.assetID, claim: job.claimToken)
            do {
                try bytes.withUnsafeBytes { try writer.write($0) }
                spooled = Spooled(
                    path: try writer.finish(durable: false).path, sha256: staged.sha256, size: staged.size,
                    contentType: staged.contentType)
            } catch {
                writer.discard()
                throw error
            }
        } catch {
            log.error("could not keep the downloaded bytes in the spool; the next try downloads again", metadata: ["error": "\(error)"])
            return nil
        }
        do {
            try recordNewSpool(job, spooled)
            return spooled.path
        } catch {
            spool.remove(spooled.path)
            return nil
        }
    }

    /// When the job's asset was deleted while this worker held it (its claim token cleared, so every write
    /// failed), removes what the job left: the object it may have uploaded and its spool file. Returns
    /// whether it was deleted. A failure here leaves the object to the delete's second purge (`purge_due_at`).
    func removeIfDeleted(_ job: ArchiveJob, key: String?, spoolPath: String?, logger log: Logger) -> Bool {
        guard (try? pool.withConnection({ try queue.isDeleted(job, on: $0) })) == true else { return false }
        if let spoolPath { spool.remove(spoolPath) }
        if let key {
            do {
                if try storage.headObject(key: key) != nil {
                    try storage.deleteObject(key: key)
                    AfterimageMetrics.objectsDeleted(1)
                }
            } catch {
                log.warning(
                    "deleted while in flight; removing its object failed, the delete's purge removes it",
                    metadata: ["key": "\(key)", "error": "\(error)"])
                return true
            }
        }
        log.notice("deleted while in flight; the transfer is dropped and what it stored removed", metadata: ["key": "\(key ?? "none")"])
        return true
    }

    /// Records what a failure means for the asset: another try later, or a permanent state with a reason.
    func settle(_ job: ArchiveJob, error: ArchiveError, logger log: Logger) {
        if error.code == .aborted || error.code == .leaseLost {
            log.info("transfer interrupted", metadata: ["reason": "\(error.message)"])
            if error.code == .aborted { _ = try? pool.withConnection { try queue.release(job, on: $0) } }
            return
        }
        let decision = retryPolicy.decide(error, attempts: job.attempts, deadline: job.deadline)
        do {
            try pool.withConnection { connection in
                switch decision {
                case .retry(let at) where error.code == .notReady:
                    log.debug("not ready yet, polling again", metadata: ["next": "\(at)"])
                    _ = try queue.reschedulePoll(job, at: at, note: error.description, on: connection)
                case .retry(let at):
                    log.warning("try failed, will retry", metadata: ["error": "\(error)", "attempt": "\(job.attempts)", "next": "\(at)"])
                    _ = try queue.retry(job, at: at, error: error.description, on: connection)
                case .fail(let reason):
                    log.error("asset failed", metadata: ["reason": "\(reason)"])
                    _ = try queue.finish(job, state: .failed, reason: reason, on: connection)
                case .expire(let reason):
                    log.error("asset expired", metadata: ["reason": "\(reason)"])
                    AfterimageMetrics.deadlineMissed(provider: job.provider)
                    _ = try queue.finish(job, state: .expired, reason: reason, on: connection)
                }
            }
        } catch {
            // The lease runs out and the job comes back: nothing is lost, only delayed.
            log.error("could not record the outcome; the lease will expire and the job will be retried", metadata: ["error": "\(error)"])
        }
    }

    /// Downloads into a `DownloadSink`: memory up to `heldDownloadLimit(for:)`, the spool beyond.
    func download(_ job: ArchiveJob, session: CurlSession, shouldAbort: @escaping @Sendable () -> Bool) throws -> Staged {
        let policy = policy()
        let started = ContinuousClock.now
        if let refusal = policy.refusal(for: job.sourceURL) { throw ArchiveError(.disallowedURL, refusal) }
        var options = policy.curlOptions()
        options.shouldAbort = shouldAbort
        if let credential = sourceCredential(job.provider) {
            options.destinationHeaders = { host in credential.headers(for: host) }
        }
        let sink = DownloadSink(memoryLimit: heldDownloadLimit(for: job)) { [spool] in
            try spool.writer(assetID: job.assetID, claim: job.claimToken)
        }
        let response: CurlResponse
        do {
            response = try session.perform(CurlRequest(url: job.sourceURL, headers: [("Accept", "*/*")]), options: options) { bytes in
                try sink.write(bytes)
            }
        } catch {
            sink.discard()
            throw Self.mapCurl(error, maxBytes: policy.maxBytes)
        }
        guard (200..<300).contains(response.status) else {
            sink.discard()
            throw ArchiveError(.sourceStatus, "the source answered \(response.status)", status: response.status)
        }
        let contentType = response.headers["content-type"]
        let result = try sink.finish(contentType: contentType)
        AfterimageMetrics.transfer(.download, provider: job.provider, bytes: sink.size, since: started)
        switch result {
        case .held(let staged):
            return staged
        case .spooled(let path, let sha256, let size):
            let md5 = spool.md5(ofFile: path, size: size, limit: Self.contentMD5Limit)
            return Staged(Spooled(path: path, sha256: sha256, size: size, contentType: contentType, md5: md5))
        }
    }

    /// How many bytes of `job`'s download may be held in memory: up to `contentMD5Limit` (never more than a
    /// single PUT takes), and only when its deadline is at least `heldDownloadMargin` away. Held bytes die
    /// with the process: after a crash the job comes back within one lease and is downloaded again, so the
    /// source must outlive that by a wide margin; a download nearer its deadline is spooled and recorded
    /// before its upload, as every download used to be.
    func heldDownloadLimit(for job: ArchiveJob, now: Date = Date()) -> Int {
        let limit = Int(min(Self.contentMD5Limit, multipartThreshold))
        guard let deadline = job.deadline else { return limit }
        return deadline.timeIntervalSince(now) >= heldDownloadMargin ? limit : 0
    }

    /// Time a download must still have before its deadline to be held in memory: ten minutes, or four
    /// leases when those are longer.
    var heldDownloadMargin: TimeInterval { max(600, 4 * TimeInterval(queue.leaseSeconds)) }

    static func mapCurl(_ error: CurlError, maxBytes: Int64) -> ArchiveError {
        switch error.code {
        case .tooLarge: return ArchiveError(.tooLarge, "the file is larger than fetch.max_bytes (\(maxBytes))")
        case .blockedAddress: return ArchiveError(.blockedAddress, "the source resolves to a private or reserved address")
        case .disallowedRedirect, .protocolNotAllowed:
            return ArchiveError(.disallowedURL, "redirected to a URL outside fetch.allowed_hosts / allowed_schemes")
        case .aborted: return ArchiveError(.aborted, "transfer aborted")
        case .sinkFailed: return ArchiveError(.spool, error.message)
        default: return ArchiveError(.transport, error.message)
        }
    }

    /// Single PUT up to the threshold, multipart above it (`body` is then a spool file); then HEAD to check
    /// the stored size. Both kinds
    /// poll `shouldAbort` while the bytes go up and end with `.aborted` when it says stop (a multipart
    /// upload is aborted at the store as well).
    ///
    /// A single PUT with the body's MD5 (`md5`, taken once it was downloaded) sends it as `Content-MD5`, which
    /// the store checks; when the answer's ETag is that same MD5, the store has confirmed the very bytes
    /// and the HEAD is skipped: a round trip less per object, which is most of the per-file cost of small
    /// outputs. Any other ETag (a store that encrypts with KMS, say) gets the HEAD as before.
    ///
    /// Only files up to `contentMD5Limit` get an MD5: hashing costs CPU in proportion to the size (MD5 has
    /// no instructions of its own, unlike SHA-256: about 3 ms for 2 MB here, 14 % of the daemon's CPU in
    /// the 2 MB benchmark), a HEAD the same whatever the size; above 1 MiB the HEAD costs less.
    func upload(
        key: String, body: RequestBody, size: Int64, sha256: String, md5: [UInt8]? = nil, contentType: String?,
        sourceURL: String, shouldAbort: (@Sendable () -> Bool)? = nil
    ) throws -> String? {
        let metadata = ["sha256": sha256, "source-url": Self.metadataSourceURL(sourceURL)]
        let etag: String?
        do {
            if size <= multipartThreshold {
                let answered = try storage.putObject(
                    key: key, body: body, contentType: contentType,
                    metadata: metadata, payloadSHA256Hex: sha256, contentMD5: md5, shouldAbort: shouldAbort)
                if let md5, Self.etag(answered, isMD5: md5) { return answered }
                etag = answered
            } else {
                // Only a spool file is ever larger than the threshold (held downloads stay under it).
                guard case .file(let path, _, _) = body else {
                    throw ArchiveError(.storage, "a body of \(size) bytes held in memory cannot be uploaded in parts")
                }
                etag = try MultipartUpload(
                    storage: storage, key: key, path: path, size: size, partSize: partSize,
                    partsInFlight: partsInFlight, expectedSHA256: sha256, shouldAbort: shouldAbort
                )
                .run(contentType: contentType, metadata: metadata)
            }
            guard let info = try storage.headObject(key: key) else {
                throw ArchiveError(.storage, "the object is missing right after the upload")
            }
            guard info.size == size else {
                throw ArchiveError(.storage, "the stored object has \(info.size) bytes, expected \(size)")
            }
        } catch let error as ArchiveError {
            throw error
        } catch let error as S3Error where error.isAborted {
            throw ArchiveError(.aborted, "upload aborted")
        } catch {
            throw ArchiveError(.storage, "\(error)")
        }
        return etag
    }

    /// Largest download whose MD5 is computed while it is spooled (see `upload`).
    static let contentMD5Limit: Int64 = 1 << 20

    /// Whether `etag` (quoted or not, any case) is the hex of `md5`: how S3 and SeaweedFS name an object
    /// stored by a single unencrypted PUT. A multipart ETag (`<hex>-<parts>`) never is.
    static func etag(_ etag: String, isMD5 md5: [UInt8]) -> Bool {
        var value = Substring(etag)
        if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
        return md5.count == 16 && value.lowercased() == Hex.encode(md5)
    }

    /// Longest `x-amz-meta-source-url` value. S3 allows 2 KiB of user metadata per object, keys and values
    /// together (`sha256` and its 64 hex digits take 70 bytes, `source-url` 10): a longer header is refused
    /// with 400, and the output could never be stored. Half the allowance leaves room for the rest.
    static let maxSourceURLMetadataBytes = 1024
    static let truncationMarker = "...[truncated]"

    /// The source URL as object metadata: without its query and fragment (a signed URL's signature is
    /// long, short-lived and no use to anyone reading the metadata later; the query can also carry a
    /// credential), printable ASCII, and cut to `maxSourceURLMetadataBytes` with a marker when still longer
    /// (never inside a `%XX` escape). The full URL stays in the `assets` row.
    static func metadataSourceURL(_ url: String) -> String {
        var base = Substring(url)
        if let cut = base.firstIndex(where: { $0 == "?" || $0 == "#" }) { base = base[..<cut] }
        let safe = metadataSafe(String(base))
        guard safe.utf8.count > maxSourceURLMetadataBytes else { return safe }
        var kept = Array(safe.utf8.prefix(maxSourceURLMetadataBytes - truncationMarker.utf8.count))
        // Every byte is ASCII after percent-encoding; step back over a `%` or `%X` left at the end.
        if let percent = kept.suffix(2).lastIndex(of: UInt8(ascii: "%")) { kept.removeSubrange(percent...) }
        return String(decoding: kept, as: UTF8.self) + truncationMarker
    }

    /// S3 metadata values travel as HTTP headers: keep them printable ASCII (percent-encode the rest).
    static func metadataSafe(_ value: String) -> String {
        var allowed = CharacterSet(charactersIn: UnicodeScalar(0x21)...UnicodeScalar(0x7e))
        allowed.remove("%")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
