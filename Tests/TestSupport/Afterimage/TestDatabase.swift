import Afterimage
import Logging
import TestSupport

extension TestEnvironment {
    /// A new database on the shared test server with every migration applied (by the daemon's own
    /// `Migrator`, as `afterimage migrate` applies them). Returns its libpq URI.
    public static func migratedDatabase(prefix: String = "t") throws -> String {
        let url = try freshDatabase(prefix: prefix)
        try migrate(url)
        return url
    }

    /// Applies every migration to the database at `url`.
    public static func migrate(_ url: String) throws {
        try Migrator().migrate(databaseURL: url, logger: Logger(label: "test-migrate"))
    }
}
