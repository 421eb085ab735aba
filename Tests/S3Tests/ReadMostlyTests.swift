import Foundation
import ReadMostly
import Testing

@Suite("ReadMostly: many readers, a rare writer")
struct ReadMostlyTests {
    final class Pair: Sendable {
        let a: Int, b: Int
        init(_ n: Int) {
            a = n
            b = -n
        }
    }

    /// Readers never see a torn or stale-then-newer-then-stale value while a writer replaces it.
    @Test func readersSeeWholeValuesInOrder() async {
        let shared = ReadMostly(Pair(0))
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for n in 1...20_000 { shared.replace(with: Pair(n)) }
                return true
            }
            for _ in 0..<4 {
                group.addTask {
                    var last = 0
                    for _ in 0..<20_000 {
                        let pair = shared.read()
                        if pair.a != -pair.b || pair.a < last { return false }
                        last = pair.a
                    }
                    return true
                }
            }
            for await ok in group { #expect(ok) }
        }
        #expect(shared.read().a == 20_000)
    }
}
