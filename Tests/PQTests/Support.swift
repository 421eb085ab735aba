import Dispatch
import Foundation
import PQ
import TestSupport

/// Connections and uniquely named tables on the shared test database, so tests can run in
/// parallel with each other and with other suites.
enum TestDatabase {
    static func url() throws -> String { try TestEnvironment.databaseURL() }

    static func connect() throws -> Connection { try Connection.connect(url: url()) }

    /// A name no other test uses: a table, a channel.
    static func uniqueName(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// Creates a table with `columns`, runs `body` with a connection and the table's name, drops it.
    static func withTable<T>(_ columns: String, _ body: (Connection, String) throws -> T) throws -> T {
        let connection = try connect()
        defer { connection.close() }
        let table = uniqueName("pq_test")
        try connection.execute("create table \(table) (\(columns))")
        defer { _ = try? connection.execute("drop table if exists \(table)") }
        return try body(connection, table)
    }
}

/// Runs `body` on `count` real threads at once (not the cooperative pool, which blocking calls
/// would starve) and waits for all of them, at most `timeout`. False on timeout.
func runOnThreads(_ count: Int, timeout: Duration = .seconds(60), _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    let (seconds, attoseconds) = timeout.components
    return group.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))) == .success
}

/// Seconds a block took, by the monotonic clock.
func elapsed(_ body: () throws -> Void) rethrows -> Duration {
    let start = ContinuousClock.now
    try body()
    return ContinuousClock.now - start
}

/// The code of the PQError `body` throws, or nil when it throws nothing or something else.
func pqErrorCode(_ body: () throws -> Void) -> PQError.Code? {
    do {
        try body()
        return nil
    } catch let error as PQError {
        return error.code
    } catch {
        return nil
    }
}
