import AfterimageTestSupport
import Curl
import Foundation
import Logging
import PQ
import TestSupport
import Testing

@testable import Afterimage

/// The Stability poll against the fake API, without a daemon: what each answer becomes.
@Suite("Stability source: answers of the results API")
struct StabilitySourceTests {
    let fake: FakeStability
    let spool: Spool
    let policy = FetchPolicy(allowedHosts: ["127.0.0.1"], allowedSchemes: ["http"], allowPrivateNetworks: true, maxBytes: 1 << 20)

    init() throws {
        fake = try FakeStability(keyCount: 3)
        spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-stability-source-\(UUID().uuidString)")
    }

    func job(_ id: String, receivedSecondsAgo: TimeInterval = 1, kind: StabilityGenerationKind = .image) -> ArchiveJob {
        ArchiveJob(
            assetID: Int64.random(in: 1...1_000_000), provider: "stability", predictionID: id, outputIndex: 0,
            sourceURL: "\(fake.baseURL)\(kind.resultsPath)\(id)",
            deadline: Date().addingTimeInterval(StabilityIntake.resultRetention - receivedSecondsAgo), attempts: 1,
            claimToken: UUID(), spoolPath: nil, spoolSHA256: nil, spoolSize: nil, contentType: nil, sourceKind: .stabilityResult)
    }

    /// The error `fetch` throws for `id` with `keys` (default: the fake's first key only).
    func failure(
        _ id: String, key: String? = nil, keys: [String]? = nil, source: StabilitySource? = nil, job: ArchiveJob? = nil,
        now: Date = Date()
    ) throws -> ArchiveError {
        let source = source ?? StabilitySource(apiKeys: { [fake] in keys ?? [key ?? fake.apiKey] })
        do {
            _ = try source.fetch(job ?? self.job(id), spool: spool, session: CurlSession(), policy: policy, shouldAbort: { false }, now: now)
        } catch let error as ArchiveError {
            return error
        }
        throw TestSupportError("fetch of \(id) succeeded")
    }

    func spoolFiles() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: spool.directory) }

    @Test func theBytesAndTheirHeaders() throws {
        try fake.script("done", "200", size: 4321, type: "video/mp4", finishReason: "CONTENT_FILTERED", seed: 12)
        let fetched = try StabilitySource(apiKeys: { [fake] in [fake.apiKey] })
            .fetch(job("done"), spool: spool, session: CurlSession(), policy: policy, shouldAbort: { false })
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: fetched.path))) == FakeStability.bytes("done", size: 4321))
        #expect(fetched.size == 4321)
        #expect(fetched.contentType == "video/mp4")
        #expect(fetched.finishReason == "CONTENT_FILTERED")
        #expect(fetched.seed == 12)
        spool.remove(fetched.path)
    }

    @Test func inProgressHonoursRetryAfterButNeverPollsSoonerThanTenSeconds() throws {
        try fake.script("slow", "202", retryAfter: 25)
        let told = try failure("slow")
        #expect(told.code == .notReady)
        #expect(told.retryAfter == 25)
        try fake.script("hasty", "202", retryAfter: 4)
        #expect(try failure("hasty").retryAfter == 10)
        try fake.script("slower", "202")
        let guessed = try failure("slower")
        #expect(guessed.code == .notReady)
        #expect(guessed.retryAfter == 10)
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
            #expect(error.retryAfter == 10, "no retry polls the generation sooner than 10 s")
        }
        // 5xx is retried; 403 is retried a few times, then fails (expires once past the deadline).
        let policy = RetryPolicy()
        if case .retry = policy.decide(try failure("e500"), attempts: 3, deadline: Date().addingTimeInterval(3600)) {
        } else {
            Issue.record("5xx must be retried")
        }
        if case .fail(let reason) = policy.decide(
            try failure("e403"), attempts: policy.maxClientErrorAttempts, deadline: Date().addingTimeInterval(3600))
        {
            #expect(reason.contains("403"))
        } else {
            Issue.record("403 must fail after its tries")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool.directory).isEmpty)
    }

    @Test func noKeyNoRequest() throws {
        let error = try failure("any", keys: ["", ""])
        #expect(error.message.contains("stability.api_key"))
        #expect(try fake.count("any") == 0)
    }

    @Test func theKeyNeverLeavesTheAllowedHosts() throws {
        let strict = FetchPolicy(allowedHosts: ["api.stability.ai"], allowedSchemes: ["https"], allowPrivateNetworks: false, maxBytes: 1)
        let source = StabilitySource(apiKeys: { [fake] in fake.apiKeys })
        #expect(throws: ArchiveError.self) {
            _ = try source.fetch(job("x"), spool: spool, session: CurlSession(), policy: strict, shouldAbort: { false })
        }
        #expect(try fake.count("x") == 0)
    }
}

/// Issue 12: what Stability really answers, and several keys.
extension StabilitySourceTests {
    func fetch(_ job: ArchiveJob, source: StabilitySource, now: Date = Date()) throws -> StabilitySource.Fetched {
        try source.fetch(job, spool: spool, session: CurlSession(), policy: policy, shouldAbort: { false }, now: now)
    }

    func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    @Test func aJSONAnswerIsDecodedFromItsResultFieldIntoTheSpool() throws {
        let source = StabilitySource(apiKeys: { [fake] in [fake.apiKey] })
        // The fake's own bytes, base64 in `result`, with the JSON's finish reason and seed.
        try fake.script("json", "200", size: 70_000, finishReason: "CONTENT_FILTERED", seed: 77, format: "json")
        let fetched = try fetch(job("json"), source: source)
        #expect(try fileBytes(fetched.path) == FakeStability.bytes("json", size: 70_000))
        #expect(fetched.size == 70_000)
        #expect(fetched.sha256 == FakeProvider.sha256Hex(FakeStability.bytes("json", size: 70_000)))
        #expect(fetched.finishReason == "CONTENT_FILTERED")
        #expect(fetched.seed == 77)
        #expect(try spoolFiles() == [URL(fileURLWithPath: fetched.path).lastPathComponent], "the JSON answer itself must not stay in the spool")
        spool.remove(fetched.path)

        // The real-shaped answer: a PNG in `result`, typed by its bytes.
        try fake.script("png", "200", bodyFile: StabilityRig.fixturePath("results-answer.json"))
        let png = try fetch(job("png"), source: source)
        #expect(try fileBytes(png.path) == StabilityArchiveTests.onePixelPNG)
        #expect(png.contentType == "image/png")
        #expect(png.seed == 2_718_281_828)
        #expect(png.finishReason == "SUCCESS")
        spool.remove(png.path)

        // A JSON answer that is not base64 is an error that says so, and leaves nothing behind.
        let broken = NSTemporaryDirectory() + "afterimage-broken-\(UUID().uuidString).json"
        try Data(#"{"result": "not base64!", "finish_reason": "SUCCESS", "seed": 1}"#.utf8).write(to: URL(fileURLWithPath: broken))
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try fake.script("broken", "200", bodyFile: broken)
        let error = try failure("broken")
        #expect(error.status == 200)
        #expect(error.message.contains("base64"), "\(error.message)")
        #expect(try spoolFiles().isEmpty)
    }

    @Test func audioIsPolledAtItsOwnEndpointAskingForAudio() throws {
        let source = StabilitySource(apiKeys: { [fake] in [fake.apiKey] })
        try fake.script("song", "200", size: 9000, type: "audio/mpeg", seed: 5, kind: "audio")
        let fetched = try fetch(job("song", kind: .audio), source: source)
        #expect(fetched.contentType == "audio/mpeg")
        #expect(try fileBytes(fetched.path) == FakeStability.bytes("song", size: 9000))
        spool.remove(fetched.path)
        let request = try #require(try fake.requests("song").first)
        #expect(request.path == "/v2beta/audio/results/")
        #expect(request.accept == "audio/*")
        // The same generation asked at the image endpoint is not found there.
        #expect(try failure("song").status == 404)

        // A JSON audio answer (`audio`) is decoded and typed by its bytes.
        try fake.script("wave", "200", kind: "audio", bodyFile: StabilityRig.fixturePath("audio-answer.json"))
        let wave = try fetch(job("wave", kind: .audio), source: source)
        #expect(wave.contentType == "audio/wav")
        #expect(try fileBytes(wave.path).prefix(4) == Array("RIFF".utf8)[...])
        #expect(wave.seed == 1337)
        spool.remove(wave.path)
    }

    @Test func a404IsAskedAgainWithTheNextKeyAndTheOwnerIsAskedFirstAfterwards() throws {
        let source = StabilitySource(apiKeys: { [fake] in fake.apiKeys })
        try fake.script("third", "202,200", size: 3000, owner: 2)
        let now = Date()
        let first = try failure("third", source: source, now: now)
        #expect(first.code == .notReady)
        #expect(try fake.requests("third").map(\.key) == [0, 1, 2])
        #expect(try fake.requests("third").map(\.status) == [404, 404, 202])
        // Ten seconds later only the owner is asked.
        let fetched = try fetch(job("third"), source: source, now: now.addingTimeInterval(11))
        #expect(try fileBytes(fetched.path) == FakeStability.bytes("third", size: 3000))
        #expect(try fake.requests("third").map(\.key) == [0, 1, 2, 2])
        spool.remove(fetched.path)

        // A key that no longer works (401) does not end the search either.
        try fake.script("second", "200", owner: 1)
        let revoked = "sk-revoked-\(UUID().uuidString)"
        let found = try fetch(job("second"), source: StabilitySource(apiKeys: { [fake] in [revoked, fake.apiKeys[1]] }))
        #expect(found.size == 2048)
        #expect(try fake.requests("second").map(\.status) == [401, 200])
        spool.remove(found.path)
    }

    @Test func notFoundOnlyWhenEveryKeySaysSoAndExpiredOnlyAfterTheDeadline() throws {
        let source = StabilitySource(apiKeys: { [fake] in fake.apiKeys })
        let error = try failure("nobodys", source: source)
        #expect(error.status == 404)
        #expect(error.message.hasPrefix("Stability answered 404 to each of the 3 API keys: not_found"), "\(error.message)")
        #expect(try fake.requests("nobodys").map(\.key) == [0, 1, 2])
        for key in fake.apiKeys { #expect(!error.description.contains(key)) }
        let policy = RetryPolicy()
        if case .retry = policy.decide(error, attempts: 1, deadline: Date().addingTimeInterval(3600)) {
        } else {
            Issue.record("a 404 before the deadline must be asked again")
        }
        if case .expire(let reason) = policy.decide(error, attempts: 1, deadline: Date().addingTimeInterval(-1)) {
            #expect(reason.contains("404"))
        } else {
            Issue.record("a 404 from every key after the deadline means the result is gone")
        }
    }

    @Test func noGenerationIsPolledTwiceWithinTenSeconds() throws {
        let source = StabilitySource(apiKeys: { [fake] in [fake.apiKey] })
        try fake.script("busy", "202")
        let now = Date()
        let job = self.job("busy")
        #expect(try failure("busy", source: source, job: job, now: now).code == .notReady)
        // A claim sooner than that (a lease that ran out, a retry by hand) does not reach Stability.
        let early = try failure("busy", source: source, job: job, now: now.addingTimeInterval(3))
        #expect(early.code == .notReady)
        // Counted from the end of the first poll: a little over 7 s.
        #expect((7...8).contains(early.retryAfter ?? 0), "\(early.retryAfter ?? -1)")
        #expect(try fake.count("busy") == 1)
        _ = try failure("busy", source: source, job: job, now: now.addingTimeInterval(11))
        #expect(try fake.count("busy") == 2)
    }
}

/// The spool keeps inline bytes (their only local copy) through sweeps that remove other garbage.
@Suite("Spool: the sweep keeps what is still needed", .serialized)
struct StabilitySpoolTests {
    @Test func theSweepTakesOnlyFilesNoLiveAssetWriterOrClaimNeeds() throws {
        let databaseURL = try TestEnvironment.migratedDatabase(prefix: "stabspool")
        let pool = Pool(url: databaseURL, size: 1)
        defer { pool.close() }
        let spool = try Spool(directory: NSTemporaryDirectory() + "afterimage-inline-spool-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: spool.directory) }
        let sweeper = SpoolSweeper(spool: spool, pool: pool, interval: 60, logger: Logger(label: "test"))
        func file(_ name: String, age: TimeInterval = 3600) throws -> String {
            let path = "\(spool.directory)/\(name)"
            try Data([1]).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: path)
            return path
        }
        // pid 2^22+1 is above Linux's pid_max default: a writer that is surely gone.
        let gone = try file("inline-a.4194305.inline")
        let pending = try file("inline-b.4194305.inline")
        let live = try file("inline-c.\(getppid()).inline")
        let failed = try file("inline-d.4194305.inline")
        let fresh = try file("inline-e.4194305.inline", age: 0)
        let deadPart = try file("inline-f.4194305.part", age: 0)
        // Written by this process and not yet recorded: claimed, however old it looks.
        let writer = try spool.inlineWriter()
        try [UInt8](repeating: 7, count: 10).withUnsafeBytes { try writer.write($0) }
        let (claimed, _) = try writer.finish()
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: claimed)

        let connection = try Connection.connect(url: databaseURL)
        defer { connection.close() }
        try connection.execute("INSERT INTO predictions (provider, id, status) VALUES ('stability', 'p', 'succeeded')")
        for (index, (pointer, state, path)) in [("/a", "pending", pending), ("/b", "failed", failed)].enumerated() {
            // Each output its own number: (provider, prediction, output_index) is unique (0007).
            try connection.execute(
                """
                INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, source_kind, state, spool_path)
                VALUES ('stability', 'p', $1, $4, 'inline:x', 'inline', $2, $3)
                """, [pointer, state, path, index])
        }
        let outcome = try sweeper.sweep()
        #expect(Set(outcome.removed) == [gone, failed, deadPart])
        #expect(outcome.clearedReferences == 1)
        for kept in [pending, live, fresh, claimed] { #expect(FileManager.default.fileExists(atPath: kept), "\(kept)") }
        #expect(try connection.query("SELECT spool_path FROM assets WHERE pointer = '/b'")[0].decode(0, as: String?.self) == nil)
        #expect(try connection.query("SELECT spool_path FROM assets WHERE pointer = '/a'")[0].decode(0, as: String?.self) == pending)

        // Once its owner releases it (its row committed, or given up), the usual rules apply.
        spool.release(claimed)
        #expect(try sweeper.sweep().removed == [claimed])
    }
}
