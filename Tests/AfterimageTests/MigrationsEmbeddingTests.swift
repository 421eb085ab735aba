import Foundation
import TestSupport
import Testing

@testable import Afterimage

@Suite("Embedded migrations")
struct MigrationsEmbeddingTests {
    /// The binary carries its migrations; this fails when migrations/*.sql changed without re-running
    /// scripts/embed-migrations.sh, so the shipped schema can never drift from the files.
    @Test func embeddedCopyMatchesTheFiles() throws {
        let directory = TestEnvironment.repositoryRoot.appendingPathComponent("migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(!files.isEmpty)
        #expect(Migration.bundled.map(\.name) == files)
        for migration in Migration.bundled {
            let onDisk = try String(contentsOf: directory.appendingPathComponent(migration.name), encoding: .utf8)
            #expect(
                migration.sql.trimmingCharacters(in: .whitespacesAndNewlines) == onDisk.trimmingCharacters(in: .whitespacesAndNewlines),
                "\(migration.name) differs from its embedded copy: run scripts/embed-migrations.sh")
        }
    }

    @Test func checksumsAreStableAndDistinct() {
        let a = Migration(name: "a.sql", sql: "SELECT 1")
        #expect(a.checksum == Migration(name: "a.sql", sql: "SELECT 1").checksum)
        #expect(a.checksum != Migration(name: "a.sql", sql: "SELECT 2").checksum)
        #expect(a.checksum.count == 64)
    }
}
