import AfterimageTestSupport
import Foundation
import Logging
import PQ
import S3
import TestSupport
import Testing

@testable import Afterimage

/// Issue 19, raw-body retention on a big, busy table: the walk reads neither young deliveries nor pruned
/// ones, goes back over held-back bodies only, and the kept-bytes tally matches a full sum without taking
/// one. Real PostgreSQL, the schema as migrated.
@Suite("Lifecycle: retention walk and tally", .serialized)
struct LifecycleRetentionWalkTests {
    let url: String
    let connection: Connection

    init() throws {
        url = try TestEnvironment.migratedDatabase(prefix: "walk")
        connection = try Connection.connect(url: url)
    }

    /// `count` deliveries of prediction `{tag}{n}` received `age` seconds ago, bodies of `size + n % 7` bytes.
    func seed(_ tag: String, count: Int, age: Int, size: Int) throws {
        try connection.execute(
            """
            INSERT INTO deliveries (provider, webhook_id, body, received_at, outcome, prediction_id)
            SELECT 'replicate', $1 || n, convert_to(repeat('x', ($4 + n % 7)::int), 'UTF8'), now() - make_interval(secs => $3), 'accepted', $1 || n
            FROM generate_series(1, $2) n
            """, [tag, count, age, size])
    }

    func keptBytes() throws -> Int64 {
        try connection.query("SELECT coalesce(sum(octet_length(body)), 0)::bigint FROM deliveries WHERE body_pruned_at IS NULL")
            .first?.decode(0, as: Int64.self) ?? -1
    }

    /// Runs batches until the walk has caught up; returns them.
    func walk(_ retention: BodyRetention) throws -> [BodyRetention.Batch] {
        var batches: [BodyRetention.Batch] = []
        repeat { batches.append(try retention.runBatch(on: connection)) } while !(batches.last?.caughtUp ?? false) && batches.count < 100
        return batches
    }

    @Test("old settled bodies pruned in batches; young ones never read; a pass with nothing due reads no row")
    func walkStopsAtTheYoung() throws {
        try seed("old", count: 450, age: 8 * 86400, size: 1300)
        try seed("young", count: 3000, age: 60, size: 1300)
        var retention = BodyRetention(keepSeconds: 7 * 86400)
        retention.batchRows = 200
        let first = try walk(retention)
        #expect(first.map(\.pruned) == [200, 200, 50])
        // The young rows are not read at all: the last batch saw the 50 old rows only.
        #expect(first.map(\.examined) == [200, 200, 50])
        #expect(try connection.query("SELECT count(*) FROM deliveries WHERE body_pruned_at IS NOT NULL").first?.decode(0, as: Int.self) == 450)
        #expect(
            try connection.query("SELECT count(*) FROM deliveries WHERE prediction_id LIKE 'young%' AND octet_length(body) >= 1300")
                .first?.decode(0, as: Int.self) == 3000)
        // Nothing is due: the next passes read nothing (walking the primary key read a batch of young rows each time).
        for _ in 0..<3 {
            let idle = try retention.runBatch(on: connection)
            #expect(idle.examined == 0 && idle.pruned == 0 && idle.caughtUp)
        }
    }

    @Test("bodies held back are gone over again, at most every rescan interval, and only they are read")
    func heldBackBodiesAreRescannedAlone() throws {
        try seed("held", count: 30, age: 8 * 86400, size: 100)
        try seed("free", count: 500, age: 8 * 86400, size: 100)
        // Thirty predictions whose outputs are still queued.
        try connection.execute(
            """
            INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state)
            SELECT 'replicate', 'held' || n, '/output/0', 0, 'https://replicate.delivery/x/' || n || '.png', 'pending'
            FROM generate_series(1, 30) n
            """)
        var retention = BodyRetention(keepSeconds: 86400)
        retention.batchRows = 1000
        retention.rescanInterval = 3600
        // rescanned_at starts at the cursor row's creation: not due for an hour.
        let first = try walk(retention)
        #expect(first.reduce(0) { $0 + $1.pruned } == 500)
        #expect(first.reduce(0) { $0 + $1.examined } == 530)
        #expect(try retention.runBatch(on: connection).examined == 0, "went over held-back bodies before the rescan interval")

        // Settle ten of them; make the rescan due.
        try connection.execute(
            "UPDATE assets SET state = 'stored', stored_at = now() WHERE prediction_id IN (SELECT 'held' || n FROM generate_series(1, 10) n)")
        try connection.execute("UPDATE lifecycle_cursors SET rescanned_at = now() - interval '2 hours'")
        // The first walk finds nothing new and moves the position back; the second goes over the held-back bodies.
        let rescan = try walk(retention) + walk(retention)
        // Only the thirty kept bodies are read, not the 500 pruned ones between them.
        #expect(rescan.reduce(0) { $0 + $1.examined } == 30)
        #expect(rescan.reduce(0) { $0 + $1.pruned } == 10)
        #expect(try retention.runBatch(on: connection).examined == 0)
    }

    @Test("the kept-bytes tally equals a full sum, through catching up, pruning by retention and by delete, and new deliveries")
    func tallyMatchesAFullSum() throws {
        try seed("a", count: 95, age: 8 * 86400, size: 1000)
        try seed("b", count: 40, age: 3600, size: 50_000)
        try seed("c", count: 12, age: 5, size: 2000)  // within the settle window: summed whole each time
        var tally = BodyBytesTally()
        tally.chunkRows = 7
        var chunks = 0
        while try !tally.advance(on: connection) { chunks += 1 }
        #expect(chunks == 135 / 7)
        #expect(try tally.total(on: connection) == keptBytes())
        #expect(try keptBytes() > 0)

        var retention = BodyRetention(keepSeconds: 7 * 86400)
        retention.batchRows = 30
        #expect(try walk(retention).reduce(0) { $0 + $1.pruned } == 95)
        // A delete's statement (as PredictionDeleter writes it), on rows both inside and after the tally.
        try connection.execute(
            """
            UPDATE deliveries SET body_sha256 = encode(sha256(body), 'hex'), body_size = octet_length(body), body = ''::bytea, body_pruned_at = now()
            WHERE prediction_id IN ('b1', 'b2', 'c3') AND body_pruned_at IS NULL
            """)
        try seed("d", count: 20, age: 7200, size: 700)  // behind the tally's place: as a late commit, missed
        try seed("e", count: 20, age: 0, size: 900)
        #expect(try tally.advance(on: connection))
        let missed: Int64 = (1...20).reduce(0) { $0 + Int64(700 + $1 % 7) }
        #expect(try tally.total(on: connection) == keptBytes() - missed)
        #expect(try connection.query("SELECT count(*) FROM body_bytes_pruned").first?.decode(0, as: Int.self) == 0)
    }

    @Test("a pass prunes at most retention.interval × maxBodiesPerSecond bodies, so a small interval does not prune faster")
    func passBudgetFollowsTheInterval() throws {
        try seed("backlog", count: 700, age: 8 * 86400, size: 1300)
        let pool = Pool(url: url, size: 1)
        defer { pool.close() }
        // The deleter is not used by body pruning; its store is never contacted.
        let storage = S3Client(
            endpoint: try S3Endpoint(endpoint: "http://127.0.0.1:9", region: "us-east-1", bucket: "unused"),
            credentials: S3Credentials(accessKeyID: "unused", secretAccessKey: "unused"))
        let deleter = PredictionDeleter(
            storage: storage, layout: StorageLayout(prefix: ""), spool: nil, leaseSeconds: 60, logger: Logger(label: "test"))
        func service(interval: TimeInterval, perSecond: Int) -> RetentionService {
            var configuration = RetentionService.Configuration()
            configuration.interval = interval
            configuration.maxBodiesPerSecond = perSecond
            return RetentionService(pool: pool, deleter: deleter, configuration: configuration, logger: Logger(label: "test"))
        }
        let heartbeat = Heartbeat(name: "test", tolerance: .seconds(60))
        func prunedSoFar() throws -> Int {
            try connection.query("SELECT count(*) FROM deliveries WHERE body_pruned_at IS NOT NULL").first?.decode(0, as: Int.self) ?? -1
        }
        // 1 s at 150 a second: one pass prunes 150 (a full batch of 200 cut to what the budget leaves).
        let everySecond = service(interval: 1, perSecond: 150)
        #expect(everySecond.bodiesPerPass == 150)
        #expect(try everySecond.pruneBodies(heartbeat) == 150)
        #expect(try prunedSoFar() == 150)
        #expect(try everySecond.pruneBodies(heartbeat) == 150)
        #expect(try prunedSoFar() == 300)
        // 3 s at the same rate: 450 a pass, in three batches (200, 200, 50); the walk goes on where it stopped.
        let everyThree = service(interval: 3, perSecond: 150)
        #expect(try everyThree.pruneBodies(heartbeat) == 400)
        #expect(try prunedSoFar() == 700)
        #expect(try everyThree.pruneBodies(heartbeat) == 0)
        // The defaults: 200 a second, so 12,000 at the default interval of 60 s.
        #expect(service(interval: 60, perSecond: RetentionService.Configuration().maxBodiesPerSecond).bodiesPerPass == 12_000)
    }
}
