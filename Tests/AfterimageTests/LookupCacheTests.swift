import Foundation
import Testing
@testable import Afterimage

@Suite("Lookup cache: settled only, invalidation wins, bounded")
struct LookupCacheTests {
    static func asset(_ state: String, prediction: String = "p1", index: Int = 0) -> AssetView {
        AssetView(id: Int64(index + 1), provider: "replicate", predictionID: prediction, index: index, pointer: "/\(index)",
                  state: state, attempts: 0, size: 10, sha256: String(repeating: "0", count: 64), contentType: "image/png",
                  key: state == "stored" ? "k/\(prediction)-\(index).png" : nil, failureReason: nil,
                  createdAt: "2026-11-21T10:00:00.000Z", updatedAt: "2026-11-21T10:00:00.000Z", storedAt: nil,
                  secondsUntilNextAttempt: 0, sourceKind: "url", sourceURL: "https://replicate.delivery/x.png",
                  finishReason: nil, seed: nil)
    }

    static func view(_ id: String = "p1", status: String = "succeeded", assets: [String] = ["stored"], input: String = "{}") -> PredictionView {
        PredictionView(provider: "replicate", id: id, status: status, model: "m", version: "v", inputJSON: input, error: nil,
                       dataRemoved: false, createdAt: nil, startedAt: nil, completedAt: nil,
                       firstSeenAt: "2026-11-21T10:00:00.000Z", updatedAt: "2026-11-21T10:00:00.000Z",
                       assets: assets.enumerated().map { asset($0.element, prediction: id, index: $0.offset) })
    }

    static let key = LookupCache.Key(provider: "replicate", id: "p1")

    @Test func onlySettledPredictionsAreKept() {
        let cache = LookupCache(lifetimeSeconds: 60)
        for unsettled in [Self.view(status: "processing"), Self.view(assets: ["stored", "pending"]), Self.view(assets: ["in_flight"])] {
            cache.store(unsettled, readAt: cache.generation())
            #expect(cache.view(for: Self.key) == nil)
        }
        cache.store(Self.view(assets: ["stored", "failed", "expired"]), readAt: cache.generation())
        #expect(cache.view(for: Self.key)?.assets.count == 3)
        cache.store(Self.view("p2", status: "failed", assets: []), readAt: cache.generation())
        #expect(cache.view(for: .init(provider: "replicate", id: "p2")) != nil)
        #expect(cache.view(for: .init(provider: "stability", id: "p2")) == nil)
    }

    @Test func aReadFromBeforeAnInvalidationIsNotStored() {
        let cache = LookupCache(lifetimeSeconds: 60)
        let readAt = cache.generation()
        cache.invalidate(.init(provider: "replicate", id: "unrelated"))  // a write finished meanwhile
        cache.store(Self.view(), readAt: readAt)
        #expect(cache.view(for: Self.key) == nil)
        cache.store(Self.view(), readAt: cache.generation())
        #expect(cache.view(for: Self.key) != nil)
        cache.invalidate(Self.key)
        #expect(cache.view(for: Self.key) == nil)
        cache.store(Self.view(), readAt: cache.generation())
        cache.invalidateAll()
        #expect(cache.view(for: Self.key) == nil)
        #expect(cache.bytesUsed == 0)
    }

    @Test func entriesExpireAndZeroTurnsTheCacheOff() throws {
        let off = LookupCache(lifetimeSeconds: 0)
        off.store(Self.view(), readAt: off.generation())
        #expect(off.view(for: Self.key) == nil)
        #expect(!off.isEnabled)

        let cache = LookupCache(lifetimeSeconds: 1)
        cache.store(Self.view(), readAt: cache.generation())
        #expect(cache.view(for: Self.key) != nil)
        let deadline = ContinuousClock.now + .seconds(5)
        while cache.view(for: Self.key) != nil, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(cache.view(for: Self.key) == nil)
        #expect(cache.count == 0)
    }

    @Test func oneReaderIsAskedToRefreshPastHalfTheLifetime() throws {
        let cache = LookupCache(lifetimeSeconds: 2)
        cache.store(Self.view(), readAt: cache.generation())
        #expect(cache.lookup(Self.key)?.refresh == false, "a fresh entry needs no refresh")
        // Half the (jittered, 1–2 s) lifetime is 0.5–1 s.
        let deadline = ContinuousClock.now + .seconds(3)
        var asked = false
        while !asked, ContinuousClock.now < deadline {
            asked = cache.lookup(Self.key)?.refresh == true
            if !asked { Thread.sleep(forTimeInterval: 0.02) }
        }
        #expect(asked)
        #expect(cache.lookup(Self.key)?.refresh == false, "only one reader is asked")
        cache.store(Self.view(), readAt: cache.generation())  // the refreshed copy
        #expect(cache.lookup(Self.key)?.refresh == false)
    }

    @Test func memoryStaysWithinItsBudget() {
        let budget = 256 * 1024
        let cache = LookupCache(lifetimeSeconds: 60, maxBytes: budget)
        for n in 0..<500 { cache.store(Self.view("p\(n)"), readAt: cache.generation()) }
        #expect(cache.bytesUsed <= budget)
        #expect(cache.count > 10)
        #expect(cache.view(for: .init(provider: "replicate", id: "p499")) != nil, "the newest entry is kept")
        // One prediction too large for its share of the budget is answered but not kept.
        cache.store(Self.view("huge", input: String(repeating: "x", count: budget / 8)), readAt: cache.generation())
        #expect(cache.view(for: .init(provider: "replicate", id: "huge")) == nil)
    }

    @Test func notificationPayloadsNameAPrediction() {
        #expect(LookupCacheInvalidator.key(fromPayload: "replicate/abc/def") == .init(provider: "replicate", id: "abc/def"))
        #expect(LookupCacheInvalidator.key(fromPayload: "stability/x") == .init(provider: "stability", id: "x"))
        #expect(LookupCacheInvalidator.key(fromPayload: "replicate") == nil)
        #expect(LookupCacheInvalidator.key(fromPayload: "/x") == nil)
        #expect(LookupCacheInvalidator.key(fromPayload: "replicate/") == nil)
    }
}
