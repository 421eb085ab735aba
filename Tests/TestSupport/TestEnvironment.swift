import Foundation

/// Where the test command's shared services live. `make test` (scripts/test.sh) starts a throwaway
/// PostgreSQL and SeaweedFS and exports these variables; a test that needs a service and finds its
/// variable missing fails with a message that says how to run it, rather than passing vacuously.
public enum TestEnvironment {
    public static func require(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw TestSupportError("\(name) is not set: run the suite with `make test`, which starts PostgreSQL and SeaweedFS")
        }
        return value
    }

    /// libpq URI of the shared test database (a fresh database per caller is made by `freshDatabase`).
    public static func databaseURL() throws -> String { try require("AFTERIMAGE_TEST_DATABASE_URL") }

    public struct S3: Sendable {
        public var endpoint: String
        public var region: String
        public var bucket: String
        public var accessKeyID: String
        public var secretAccessKey: String

        public init(endpoint: String, region: String, bucket: String, accessKeyID: String, secretAccessKey: String) {
            self.endpoint = endpoint
            self.region = region
            self.bucket = bucket
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
        }
    }

    public static func s3() throws -> S3 {
        S3(
            endpoint: try require("AFTERIMAGE_TEST_S3_ENDPOINT"),
            region: ProcessInfo.processInfo.environment["AFTERIMAGE_TEST_S3_REGION"] ?? "us-east-1",
            bucket: try require("AFTERIMAGE_TEST_S3_BUCKET"),
            accessKeyID: try require("AFTERIMAGE_TEST_S3_ACCESS_KEY_ID"),
            secretAccessKey: try require("AFTERIMAGE_TEST_S3_SECRET_ACCESS_KEY")
        )
    }

    /// The repository root, found from this file's location so tests work from any directory.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static var scriptsDirectory: URL { repositoryRoot.appendingPathComponent("scripts") }
    /// The project's copy of ../shared/fixtures (so tests do not depend on where the checkout lives);
    /// `SharedFixturesTests` checks the copy against the shared originals whenever they are beside us.
    public static var fixturesDirectory: URL { repositoryRoot.appendingPathComponent("Tests/Fixtures") }
    public static var sharedFixturesDirectory: URL {
        repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
    }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension TestEnvironment {
    /// A new, empty database on the shared test server, so tests that migrate or count rows never see
    /// each other. Returns its libpq URI.
    public static func freshDatabase(prefix: String = "t") throws -> String {
        let base = try databaseURL()
        let name = "\(prefix)_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
        try runCommand("/usr/bin/psql", [base, "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name)"])
        guard let slash = base.lastIndex(of: "/") else { throw TestSupportError("unexpected database URL") }
        return String(base[..<slash]) + "/" + name
    }

    /// The `afterimage` executable built by `swift build` (scripts/test.sh exports its path).
    public static func afterimageBinary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["AFTERIMAGE_BINARY"] { return path }
        let candidate = repositoryRoot.appendingPathComponent(".build/debug/afterimage").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw TestSupportError("afterimage binary not found; run `make test`")
        }
        return candidate
    }
}
