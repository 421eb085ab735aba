import PQ
import TestSupport
import Testing

/// A PostgreSQL restart under a warm pool: calls fail while the server is down, and afterwards at
/// most one call fails before the pool works again.
@Suite(.serialized) struct PoolRestartTests {
    @Test(.timeLimit(.minutes(3)))
    func poolRecoversAfterPostgreSQLRestart() throws {
        let postgres = try RestartablePostgres()
        defer { postgres.destroy() }
        let pool = Pool(url: postgres.url, size: 3, acquireTimeout: .seconds(5), connectTimeoutSeconds: 2)
        defer { pool.close() }

        try warm(pool, connections: 3)
        #expect(pool.stats.idle == 3)
        #expect(try pool.withConnection { try $0.query("select 1").first?.decode(0, as: Int.self) } == 1)

        try postgres.stop()
        let downCode = pqErrorCode { try pool.withConnection { _ = try $0.query("select 1") } }
        #expect(downCode == .connectionLost || downCode == .connectionFailed, "got \(String(describing: downCode))")
        #expect(pool.stats.inUse == 0, "a failed call leaked its slot")

        try postgres.start()
        var failures = 0
        for _ in 0..<6 {
            do {
                let value = try pool.withConnection { try $0.query("select 41 + 1").first?.decode(0, as: Int.self) }
                #expect(value == 42)
            } catch {
                failures += 1
            }
        }
        #expect(failures <= 1)
        // Several connections work again at once.
        try warm(pool, connections: 3)
        #expect(pool.stats.inUse == 0)
    }

    @Test(.timeLimit(.minutes(3)))
    func warmPoolLosesAtMostOneCallAcrossARestart() throws {
        let postgres = try RestartablePostgres()
        defer { postgres.destroy() }
        let pool = Pool(url: postgres.url, size: 3, acquireTimeout: .seconds(5), connectTimeoutSeconds: 2)
        defer { pool.close() }
        try warm(pool, connections: 3)
        // Restart while the pool is idle: its three connections are all dead now.
        try postgres.stop()
        try postgres.start()
        var failures = 0
        for _ in 0..<6 {
            do {
                try pool.withConnection { _ = try $0.query("select 1") }
            } catch {
                failures += 1
            }
        }
        #expect(failures <= 1)
        #expect(pool.stats.inUse == 0)
    }
}
