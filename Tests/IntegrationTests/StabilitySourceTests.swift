import Curl
import Foundation
import Logging
import PQ
import Testing
import TestSupport
@testable import Afterimage

/// The Stability poll against the fake API, without a daemon: what each answer becomes.
@Suite("Stability source: answers of the results API")
struct StabilitySourceTests {
    let fake: FakeStability
    let spool: Spool
    let policy = FetchPolicy(allowedHosts: ["127.0.0.1"], allowedSchemes: ["http"], allowPrivateNetworks: true, maxBytes: 1 << 20)

    init() throws {
        fake = try FakeStability()
        spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-stability-source-\(UUID().uuidString)")
    }

    func job(_ id: String, receivedSecondsAgo: TimeInterval = 1) -> ArchiveJob {
        ArchiveJob(assetID: Int64.random(in: 1...1_000_000), provider: "stability", predictionID: id, outputIndex: 0,
                   sourceURL: "\(fake.baseURL)/v2beta/results/\(id)",
                   deadline: Date().addingTimeInterval(StabilityIntake.resultRetention - receivedSecondsAgo), attempts: 1,
                   claimToken: UUID(), spoolPath: nil, spoolSHA256: nil, spoolSize: nil, contentType: nil, sourceKind: .stabilityResult)
    }

    /// The error `fetch` throws for `id` with `key`.
    func failure(_ id: String, key: String? = nil) throws -> ArchiveError {
        let source = StabilitySource(apiKey: { [fake] in key ?? fake.apiKey })
        do {
            _ = try source.fetch(job(id), spool: spool, session: CurlSession(), policy: policy, shouldAbort: { false })
        } catch let error as ArchiveError {
            return error
        }
        throw TestSupportError("fetch of \(id) succeeded")
    }

    @Test func theBytesAndTheirHeaders() throws {
        try fake.script("done", "200", size: 4321, type: "video/mp4", finishReason: "CONTENT_FILTERED", seed: 12)
        let fetched = try StabilitySource(apiKey: { [fake] in fake.apiKey })
            .fetch(job("done"), spool: spool, session: CurlSession(), policy: policy, shouldAbort: { false })
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: fetched.path))) == FakeStability.bytes("done", size: 4321))
        #expect(fetched.size == 4321)
        #expect(fetched.contentType == "video/mp4")
        #expect(fetched.finishReason == "CONTENT_FILTERED")
        #expect(fetched.seed == 12)
        spool.remove(fetched.path)
    }

    @Test func inProgressHonoursRetryAfterElseBacksOffFromAFewSeconds() throws {
        try fake.script("slow", "202", retryAfter: 4)
        let told = try failure("slow")
        #expect(told.code == .notReady)
        #expect(told.retryAfter == 4)
        try fake.script("slower", "202")
        let guessed = try failure("slower")
        #expect(guessed.code == .notReady)
        #expect(guessed.retryAfter == 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.directory).isEmpty, "a 202 body must not stay in the spool")
    }

    @Test func errorAnswersCarryStabilitysMessageAndNeverTheKey() throws {
        let wrongKey = "sk-wrong-\(UUID().uuidString)"
        let unauthorized = try failure("any", key: wrongKey)
        #expect(unauthorized.code == .sourceStatus)
        #expect(unauthorized.status == 401)
        #expect(unauthorized.message.contains("Missing or invalid API key"))
        #expect(!unauthorized.description.contains(wrongKey))
        #expect(try fake.stats().unauthorized == 1)

        try fake.script("limited", "429")
        let limited = try failure("limited")
        #expect(limited.status == 429)
        #expect(limited.retryAfter == 60)
        #expect(limited.message.contains("rate limit"))
        if case .retry(let at) = RetryPolicy().decide(limited, attempts: 1, deadline: Date().addingTimeInterval(3600)) {
            #expect(at.timeIntervalSinceNow > 55)
        } else {
            Issue.record("429 must be retried")
        }

        for status in [403, 500] {
            try fake.script("e\(status)", "\(status)")
            let error = try failure("e\(status)")
            #expect(error.status == status)
            #expect(error.message.hasPrefix("Stability answered \(status): "))
        }
        // 5xx is retried; 403 is retried a few times, then fails (expires once past the deadline).
        let policy = RetryPolicy()
        if case .retry = policy.decide(try failure("e500"), attempts: 3, deadline: Date().addingTimeInterval(3600)) {} else { Issue.record("5xx must be retried") }
        if case .fail(let reason) = policy.decide(try failure("e403"), attempts: policy.maxClientErrorAttempts, deadline: Date().addingTimeInterval(3600)) {
            #expect(reason.contains("403"))
        } else {
            Issue.record("403 must fail after its tries")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.directory).isEmpty)
    }

    @Test func noKeyNoRequest() throws {
        let error = try failure("any", key: "")
        #expect(error.message.contains("stability.api_key"))
        #expect(try fake.count("any") == 0)
    }

    @Test func theKeyNeverLeavesTheAllowedHosts() throws {
        let strict = FetchPolicy(allowedHosts: ["api.stability.ai"], allowedSchemes: ["https"], allowPrivateNetworks: false, maxBytes: 1)
        let source = StabilitySource(apiKey: { [fake] in fake.apiKey })
        #expect(throws: ArchiveError.self) {
            _ = try source.fetch(job("x"), spool: spool, session: CurlSession(), policy: strict, shouldAbort: { false })
        }
        #expect(try fake.count("x") == 0)
    }
}

/// The spool keeps inline bytes (their only local copy) through clean-ups that remove other garbage.
@Suite("Spool: inline files survive clean-up", .serialized)
struct StabilitySpoolTests {
    @Test func inlineFilesAreRemovedOnlyWhenUnreferencedAndTheirWriterIsGone() throws {
        let spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-inline-spool-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: spool.directory) }
        // pid 2^22+1 is above Linux's pid_max default: a writer that is surely gone.
        let gone = "\(spool.directory)/inline-a.4194305.inline"
        let referenced = "\(spool.directory)/inline-b.4194305.inline"
        let live = "\(spool.directory)/inline-c.\(getppid()).inline"
        for path in [gone, referenced, live] { _ = FileManager.default.createFile(atPath: path, contents: Data([1])) }
        #expect(spool.cleanOrphans(referenced: [referenced]) == 1)
        #expect(!FileManager.default.fileExists(atPath: gone))
        #expect(FileManager.default.fileExists(atPath: referenced))
        #expect(FileManager.default.fileExists(atPath: live))
    }

    @Test func aFailedInlineAssetStillHoldsItsSpoolFile() throws {
        let databaseURL = try TestEnvironment.freshDatabase(prefix: "stabspool")
        try Migrator().migrate(databaseURL: databaseURL, logger: Logger(label: "test"))
        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        try connection.execute("INSERT INTO predictions (provider, id, status) VALUES ('stability', 'p', 'succeeded')")
        for (pointer, kind, state, path) in [("/a", "inline", "failed", "/s/inline-failed"), ("/b", "url", "failed", "/s/url-failed"),
                                             ("/c", "inline", "stored", "/s/inline-stored"), ("/d", "url", "pending", "/s/url-pending")] {
            try connection.execute("""
                INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, state, spool_path)
                VALUES ('stability', 'p', $1, 0, 'inline:x', $2, $3, $4)
                """, [pointer, kind, state, path])
        }
        let referenced = try ArchiveQueue(leaseSeconds: 5, instanceName: "t").referencedSpoolPaths(on: connection)
        #expect(referenced == ["/s/inline-failed", "/s/url-pending"])
    }
}
