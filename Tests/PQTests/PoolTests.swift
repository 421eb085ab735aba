import Dispatch
import Foundation
import PQ
import Synchronization
import TestSupport
import Testing

@Suite struct PoolTests {
    @Test func busyPoolTimesOutWithinTheBound() throws {
        let pool = Pool(url: try TestDatabase.url(), size: 2, acquireTimeout: .milliseconds(300))
        defer { pool.close() }
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holders = DispatchGroup()
        for _ in 0..<2 {
            holders.enter()
            Thread {
                _ = try? pool.withConnection { connection in
                    _ = try connection.query("select 1")
                    holding.signal()
                    release.wait()
                }
                holders.leave()
            }.start()
        }
        defer {
            release.signal()
            release.signal()
            _ = holders.wait(timeout: .now() + 10)
        }
        #expect(holding.wait(timeout: .now() + 10) == .success)
        #expect(holding.wait(timeout: .now() + 10) == .success)
        #expect(pool.stats.inUse == 2)

        var code: PQError.Code?
        let took = elapsed { code = pqErrorCode { try pool.withConnection { _ in } } }
        #expect(code == .poolTimeout)
        #expect(took >= .milliseconds(290))
        #expect(took < .seconds(3))
        #expect(pool.stats.waiting == 0)

        // A waiter is served as soon as a holder returns its connection.
        let served = Atomic<Bool>(false)
        let waiterDone = DispatchSemaphore(value: 0)
        let patient = Pool(url: try TestDatabase.url(), size: 1, acquireTimeout: .seconds(10))
        defer { patient.close() }
        let holdPatient = DispatchSemaphore(value: 0)
        let patientHeld = DispatchSemaphore(value: 0)
        Thread {
            _ = try? patient.withConnection { _ in
                patientHeld.signal()
                holdPatient.wait()
            }
        }.start()
        #expect(patientHeld.wait(timeout: .now() + 10) == .success)
        Thread {
            if (try? patient.withConnection({ try $0.query("select 1").count })) == 1 { served.store(true, ordering: .relaxed) }
            waiterDone.signal()
        }.start()
        try waitUntil(timeout: .seconds(10), "a waiter queued") { patient.stats.waiting == 1 }
        holdPatient.signal()
        #expect(waiterDone.wait(timeout: .now() + 10) == .success)
        let wasServed = served.load(ordering: .relaxed)
        #expect(wasServed)
    }

    @Test func sixteenThreadsShareFourConnections() throws {
        try TestDatabase.withTable("id serial primary key, worker int not null") { _, table in
            let pool = Pool(url: try TestDatabase.url(), size: 4, acquireTimeout: .seconds(30))
            defer { pool.close() }
            let perThread = 25
            let inUse = Atomic<Int>(0)
            let maxInUse = Atomic<Int>(0)
            let failures = Atomic<Int>(0)
            let finished = runOnThreads(16) { worker in
                for _ in 0..<perThread {
                    do {
                        try pool.withConnection { connection in
                            let now = inUse.add(1, ordering: .relaxed).newValue
                            defer { inUse.subtract(1, ordering: .relaxed) }
                            _ = maxInUse.max(now, ordering: .relaxed)
                            try connection.execute("insert into \(table) (worker) values ($1)", [worker])
                        }
                    } catch {
                        failures.add(1, ordering: .relaxed)
                    }
                }
            }
            #expect(finished)
            #expect(failures.load(ordering: .relaxed) == 0)
            #expect(maxInUse.load(ordering: .relaxed) <= 4)
            let counts = try pool.withConnection { connection in
                try connection.query("select count(*), count(distinct worker) from \(table)").first.map {
                    (try $0.decode(0, as: Int.self), try $0.decode(1, as: Int.self))
                }
            }
            #expect(counts?.0 == 16 * perThread)
            #expect(counts?.1 == 16)
            let stats = pool.stats
            #expect(stats.size == 4 && stats.inUse == 0 && stats.waiting == 0 && stats.idle <= 4 && stats.idle >= 1)
        }
    }

    @Test func closedPoolRefusesAndWakesWaiters() throws {
        let pool = Pool(url: try TestDatabase.url(), size: 1, acquireTimeout: .seconds(30))
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let waiterCode = Mutex<PQError.Code?>(nil)
        let done = DispatchGroup()
        done.enter()
        Thread {
            _ = try? pool.withConnection { _ in
                held.signal()
                release.wait()
            }
            done.leave()
        }.start()
        #expect(held.wait(timeout: .now() + 10) == .success)
        done.enter()
        Thread {
            let code = pqErrorCode { try pool.withConnection { _ in } }
            waiterCode.withLock { $0 = code }
            done.leave()
        }.start()
        try waitUntil(timeout: .seconds(10), "a waiter queued") { pool.stats.waiting == 1 }
        pool.close()
        release.signal()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(waiterCode.withLock { $0 } == .poolClosed)
        #expect(pqErrorCode { try pool.withConnection { _ in } } == .poolClosed)
        #expect(pool.stats.idle == 0 && pool.stats.inUse == 0)
    }

    @Test func failedConnectSurfacesAndFreesTheSlot() throws {
        let pool = Pool(
            url: "postgresql://afterimage:Pa55w0rdInPool@127.0.0.1:\(freePort())/none", size: 1,
            acquireTimeout: .milliseconds(500), connectTimeoutSeconds: 2)
        defer { pool.close() }
        for _ in 0..<3 {
            do {
                try pool.withConnection { _ in }
                Issue.record("connected to a closed port")
            } catch let error as PQError {
                #expect(error.code == .connectionFailed)  // not poolTimeout: the slot came back
                #expect(!error.description.contains("Pa55w0rdInPool"))
            }
        }
        #expect(pool.stats.inUse == 0 && pool.stats.idle == 0)
    }

    @Test func connectionLostDropsTheOtherIdleConnections() throws {
        let pool = Pool(url: try TestDatabase.url(), size: 3)
        defer { pool.close() }
        try warm(pool, connections: 3)
        #expect(pool.stats.idle == 3)
        #expect(throws: PQError.self) {
            try pool.withConnection { _ in throw PQError(code: .connectionLost, message: "simulated") }
        }
        #expect(pool.stats.idle == 0 && pool.stats.inUse == 0)
        #expect(try pool.withConnection { try $0.query("select 1").count } == 1)
    }

    @Test func terminatedBackendIsReplacedOnCheckout() throws {
        let pool = Pool(url: try TestDatabase.url(), size: 1)
        defer { pool.close() }
        let oldPID = try pool.withConnection { $0.backendPID }
        let admin = try TestDatabase.connect()
        defer { admin.close() }
        #expect(try admin.query("select pg_terminate_backend($1)", [Int32(oldPID)]).first?.decode(0) == true)
        try waitUntil(timeout: .seconds(10), "backend gone") {
            try admin.query("select count(*) from pg_stat_activity where pid = $1", [oldPID]).first?.decode(0) == 0
        }
        let newPID = try pool.withConnection { connection in
            _ = try connection.query("select 1")
            return connection.backendPID
        }
        #expect(newPID != oldPID)
    }

    @Test func transactionLeftOpenIsRolledBackBeforeReuse() throws {
        try TestDatabase.withTable("id int") { connection, table in
            let pool = Pool(url: try TestDatabase.url(), size: 1)
            defer { pool.close() }
            try pool.withConnection { pooled in
                try pooled.execute("begin")
                try pooled.execute("insert into \(table) values (1)")
            }
            try pool.withConnection { pooled in
                #expect(try pooled.query("select count(*) from \(table)").first?.decode(0) == 0)
                try pooled.transaction { _ in }  // would throw invalidUse if still inside a transaction
            }
            #expect(try connection.query("select count(*) from \(table)").first?.decode(0) == 0)
        }
    }
}

/// Opens `connections` connections at once (nested check-outs), so they are all idle afterwards.
func warm(_ pool: Pool, connections: Int) throws {
    func nest(_ depth: Int) throws {
        guard depth > 0 else { return }
        try pool.withConnection { connection in
            _ = try connection.query("select 1")
            try nest(depth - 1)
        }
    }
    try nest(connections)
}
