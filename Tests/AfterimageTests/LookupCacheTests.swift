import Foundation
import Testing

@testable import Afterimage

@Suite("Lookup cache: settled only, invalidation wins, bounded")
struct LookupCacheTests {
    static func asset(_ state: String, prediction: String = "p1", index: Int = 0) -> AssetView {
        AssetView(
            id: Int64(index + 1), provider: "replicate", predictionID: prediction, index: index, pointer: "/\(index)",
            state: AssetState(rawValue: state)!, attempts: 0, size: 10, sha256: String(repeating: "0", count: 64), contentType: "image/png",
            key: state == "stored" ? "k/\(prediction)-\(index).png" : nil, failureReason: nil,
            createdAt: "2026-11-21T10:00:00.000Z", updatedAt: "2026-11-21T10:00:00.000Z", storedAt: nil,
            secondsUntilNextAttempt: 0, sourceKind: "url", sourceURL: "https://replicate.delivery/x.png",
            finishReason: nil, seed: nil)
    }

    static func view(_ id: String = "p1", status: String = "succeeded", assets: [String] = ["stored"], input: String = "{}") -> PredictionView {
        PredictionView(
            provider: "replicate", id: id, status: status, model: "m", version: "v", inputJSON: input, error: nil,
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

    /// CLOCK: a prediction that keeps being read survives any number of one-off entries passing through a
    /// full cache (issue 17: at millions of predictions the cache holds a small share of them). Evicting
    /// in any order that ignores reads (the first entry of a dictionary, as before) drops it within a few
    /// hundred stores.
    @Test func entriesThatKeepBeingReadSurviveAFloodOfOthers() {
        let cache = LookupCache(lifetimeSeconds: 60, maxBytes: 64 * 1024)
        let hot = (0..<8).map { LookupCache.Key(provider: "replicate", id: "hot\($0)") }
        for key in hot { cache.store(Self.view(key.id), readAt: cache.generation()) }
        var misses = 0
        for n in 0..<5_000 {
            cache.store(Self.view("cold\(n)"), readAt: cache.generation())
            for key in hot where cache.view(for: key) == nil { misses += 1 }
        }
        #expect(misses == 0, "entries read between every store were evicted \(misses) times")
        #expect(cache.bytesUsed <= 64 * 1024)
        #expect(cache.view(for: .init(provider: "replicate", id: "cold4999")) != nil, "the newest entry is kept")
    }

    /// The bound holds whatever the number of predictions looked up: memory is `maxBytes`, not the table's size.
    @Test func theBoundHoldsForAHundredThousandPredictions() {
        let budget = 1 << 20
        let cache = LookupCache(lifetimeSeconds: 60, maxBytes: budget)
        var peak = 0
        for n in 0..<100_000 {
            cache.store(Self.view("p\(n)", assets: ["stored", "stored"]), readAt: cache.generation())
            if n % 1000 == 0 { peak = max(peak, cache.bytesUsed) }
        }
        #expect(max(peak, cache.bytesUsed) <= budget)
        let perEntry = LookupCache.approximateBytes(of: Self.view("p0", assets: ["stored", "stored"]))
        #expect(cache.count <= budget / perEntry)
        #expect(cache.count >= budget / perEntry / 2, "a full cache, not an empty one")
        cache.invalidateAll()
        #expect(cache.count == 0 && cache.bytesUsed == 0)
        cache.store(Self.view("again"), readAt: cache.generation())
        #expect(cache.view(for: .init(provider: "replicate", id: "again")) != nil, "usable after being emptied")
    }

    @Test func notificationPayloadsNamePredictions() {
        typealias Key = LookupCache.Key
        func keys(_ payload: String) -> LookupCacheInvalidator.Invalidation { LookupCacheInvalidator.invalidation(fromPayload: payload) }
        #expect(keys("replicate/abc/def") == .predictions([Key(provider: "replicate", id: "abc/def")]))
        #expect(keys("stability/x") == .predictions([Key(provider: "stability", id: "x")]))
        #expect(keys("replicate/a\nreplicate/b") == .predictions([Key(provider: "replicate", id: "a"), Key(provider: "replicate", id: "b")]))
        #expect(keys("replicate") == .predictions([]))
        #expect(keys("/x\nreplicate/\n\nreplicate/ok") == .predictions([Key(provider: "replicate", id: "ok")]))
        #expect(keys("*") == .everything)
    }

    /// What intake sends is what the invalidator reads back: every id, in payloads PostgreSQL accepts.
    @Test func intakeNotificationsRoundTrip() throws {
        let ids = Set((0..<400).map { "prediction-\($0)-" + String(repeating: "x", count: $0 % 200) })
        let payloads = AssetNotifications.payloads(provider: .replicate, ids: ids)
        #expect(payloads.count > 1, "400 long ids must not fit one payload")
        #expect(payloads.allSatisfy { $0.utf8.count < 8000 })
        var named = Set<String>()
        for payload in payloads {
            guard case .predictions(let keys) = LookupCacheInvalidator.invalidation(fromPayload: payload) else {
                Issue.record("unexpected payload \(payload.prefix(40))")
                continue
            }
            for key in keys {
                #expect(key.provider == "replicate")
                named.insert(key.id)
            }
        }
        #expect(named == ids)

        // An id with a line break cannot be listed: the others still are, and the caches are emptied.
        let odd = AssetNotifications.payloads(provider: .replicate, ids: ["a", "b\nc"])
        #expect(odd.map(LookupCacheInvalidator.invalidation(fromPayload:)) == [.predictions([.init(provider: "replicate", id: "a")]), .everything])
    }
}
