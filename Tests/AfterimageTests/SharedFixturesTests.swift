import Foundation
import TestSupport
import Testing

@Suite("Fixture copies")
struct SharedFixturesTests {
    /// Tests/Fixtures is a copy of ../shared/fixtures; when the originals are beside the checkout (as in CI),
    /// every copy must be byte-identical so the tests exercise the contract's own samples.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: TestEnvironment.sharedFixturesDirectory.path)))
    func copiesMatchTheSharedOriginals() throws {
        let shared = TestEnvironment.sharedFixturesDirectory
        let enumerator = try #require(FileManager.default.enumerator(atPath: shared.path))
        var compared = 0
        while let relative = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: shared.appendingPathComponent(relative).path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            else { continue }
            let original = try Data(contentsOf: shared.appendingPathComponent(relative))
            let copy = try Data(contentsOf: TestEnvironment.fixturesDirectory.appendingPathComponent(relative))
            #expect(copy == original, "Tests/Fixtures/\(relative) differs from ../shared/fixtures/\(relative)")
            compared += 1
        }
        #expect(compared >= 10)
    }
}
