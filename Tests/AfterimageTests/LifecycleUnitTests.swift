import Foundation
import Testing

@testable import Afterimage

@Suite("Lifecycle: dates, states, errors")
struct LifecycleUnitTests {
    @Test func datesAsTheCommandsTakeThem() throws {
        let now = try #require(Date(rfc3339: "2026-12-01T12:00:00Z"))
        #expect(DateArgument.parse("2026-11-01T08:30:00Z", now: now) == Date(rfc3339: "2026-11-01T08:30:00Z"))
        #expect(DateArgument.parse("2026-11-01", now: now) == Date(rfc3339: "2026-11-01T00:00:00Z"))
        #expect(DateArgument.parse("30d", now: now) == now.addingTimeInterval(-30 * 86400))
        #expect(DateArgument.parse("90m", now: now) == now.addingTimeInterval(-5400))
        for bad in ["", "yesterday", "2026-13-01", "-5d", "2026-11-01T25:00:00Z"] {
            #expect(DateArgument.parse(bad, now: now) == nil, "\(bad)")
        }
    }

    @Test func deletedIsATerminalStateAndA410() {
        #expect(AssetState(rawValue: "deleted") == .deleted)
        #expect(AssetState.deleted.isSettled)
        #expect(LookupStore.states.contains("deleted"))
        let error = LookupError(.deleted, "gone")
        #expect(error.status == 410 && error.errorCode == "deleted")
    }
}
