import Foundation

/// A PostgreSQL cluster of a test's own, for tests that stop and restart the server (the shared
/// one must stay up for everybody else). Started through scripts/pg.sh, the same script `make run`
/// and `make test` use.
public final class PrivatePostgres: Sendable {
    public let directory: String
    public let port: Int
    public let database: String
    public var url: String { "postgresql://afterimage@127.0.0.1:\(port)/\(database)" }

    private static var script: String { TestEnvironment.scriptsDirectory.appendingPathComponent("pg.sh").path }

    public init(database: String = "afterimage") throws {
        directory = NSTemporaryDirectory() + "afterimage-pg-" + UUID().uuidString
        port = freePort()
        self.database = database
        try start()
    }

    public func start() throws { try runCommand("/bin/bash", [Self.script, "start", directory, String(port), database]) }
    public func stop() throws { try runCommand("/bin/bash", [Self.script, "stop", directory]) }

    /// Stops the server and removes its files; call it from `defer`.
    public func destroy() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A SeaweedFS `weed mini` of a test's own, for tests that stop the store.
public final class PrivateSeaweed: Sendable {
    public let directory: String
    public let port: Int
    public let bucket = "afterimage-test"
    public let accessKeyID = "test-access-key"
    public let secretAccessKey = "test-secret-key-\(UInt32.random(in: 0...UInt32.max))"
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    private static var script: String { TestEnvironment.scriptsDirectory.appendingPathComponent("s3.sh").path }

    public init() throws {
        directory = NSTemporaryDirectory() + "afterimage-s3-" + UUID().uuidString
        port = freePort(count: 12)
        try start()
    }

    public func start() throws {
        try runCommand("/bin/bash", [Self.script, "start", directory, String(port), accessKeyID, secretAccessKey, bucket])
    }
    public func stop() throws { try runCommand("/bin/bash", [Self.script, "stop", directory]) }
    public func destroy() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
