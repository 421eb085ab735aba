import Foundation
import Glibc
import Logging
import Synchronization
import TestSupport
import Testing

@testable import Afterimage

/// What the components of a test did, in order.
final class Journal: Sendable {
    private let entries = Mutex<[String]>([])
    func add(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

/// Records what happens to it; its stop can be made to hang.
final class RecordingComponent: DaemonComponent {
    let name: String
    let stopBudget: Duration
    let journal: Journal
    let failStart: Bool
    let hangOnStop: Bool

    init(_ name: String, journal: Journal, stopBudget: Duration = .milliseconds(200), failStart: Bool = false, hangOnStop: Bool = false) {
        self.name = name
        self.journal = journal
        self.stopBudget = stopBudget
        self.failStart = failStart
        self.hangOnStop = hangOnStop
    }

    struct Refused: Error {}

    func start() throws {
        if failStart { throw Refused() }
        journal.add("start \(name)")
    }

    func stop() {
        journal.add("stop \(name)")
        if hangOnStop { Thread.sleep(forTimeInterval: 30) }
    }
}

@Suite("Lifecycle: start in order, stop in reverse, each stop bounded")
struct LifecycleTests {
    let logger = Logger(label: "test")

    @Test func startsInOrderStopsInReverse() throws {
        let journal = Journal()
        let lifecycle = Lifecycle(["a", "b", "c"].map { RecordingComponent($0, journal: journal) }, logger: logger)
        try lifecycle.start()
        lifecycle.stop()
        #expect(journal.all == ["start a", "start b", "start c", "stop c", "stop b", "stop a"])
        lifecycle.stop()  // a second stop stops nothing twice
        #expect(journal.all.count == 6)
    }

    @Test("a failed start stops what had started, in reverse, and rethrows")
    func failedStartUnwinds() {
        let journal = Journal()
        let lifecycle = Lifecycle(
            [
                RecordingComponent("a", journal: journal), RecordingComponent("b", journal: journal),
                RecordingComponent("c", journal: journal, failStart: true), RecordingComponent("d", journal: journal),
            ],
            logger: logger)
        #expect(throws: RecordingComponent.Refused.self) { try lifecycle.start() }
        #expect(journal.all == ["start a", "start b", "stop b", "stop a"])
    }

    @Test("a stop that hangs is given up after its budget and the rest still stop")
    func hangingStopIsBounded() throws {
        let journal = Journal()
        let lifecycle = Lifecycle(
            [
                RecordingComponent("a", journal: journal),
                RecordingComponent("stuck", journal: journal, stopBudget: .milliseconds(300), hangOnStop: true),
                RecordingComponent("c", journal: journal),
            ], logger: logger)
        try lifecycle.start()
        let began = ContinuousClock.now
        lifecycle.stop()
        let took = ContinuousClock.now - began
        #expect(took < .seconds(5), "stop took \(took)")
        #expect(journal.all.suffix(3) == ["stop c", "stop stuck", "stop a"])
        #expect(lifecycle.stopBudget == .milliseconds(200) * 2 + .milliseconds(300) + Lifecycle.grace * 3)
    }
}

@Suite("Heartbeats and the loop helper")
struct HeartbeatTests {
    @Test("a loop that stops beating is reported stalled; one that ended is forgotten")
    func stalledLoops() throws {
        let heartbeats = Heartbeats(defaultTolerance: .milliseconds(300))
        let stop = StopSignal()
        let threads = ThreadGroup(heartbeats: heartbeats)
        let wedge = StopSignal()
        let ticks = Atomic<Int>(0)
        threads.repeating("afterimage-test-ticker", every: 0.05, until: stop) { _ in ticks.add(1, ordering: .relaxed) }
        // Beats once, then blocks without beating (a wedged call), until released.
        threads.spawn("afterimage-test-wedged") { _ in
            while !wedge.isStopped { usleep(10_000) }
        }
        try waitUntil(timeout: .seconds(5), "the ticker to run") { ticks.load(ordering: .relaxed) >= 3 }
        try waitUntil(timeout: .seconds(5), "the wedged loop to be reported") {
            heartbeats.stalled().map(\.name) == ["afterimage-test-wedged"]
        }
        #expect(heartbeats.names == ["afterimage-test-ticker", "afterimage-test-wedged"])
        wedge.stop()
        stop.stop()
        #expect(threads.join(timeout: .seconds(5)))
        #expect(heartbeats.names.isEmpty, "ended threads keep their heartbeats registered")
        #expect(heartbeats.stalled().isEmpty)
    }

    @Test("a long wait beats; a stop ends it at once")
    func waitsBeatAndEndOnStop() throws {
        let heartbeats = Heartbeats(defaultTolerance: .milliseconds(1500))
        let stop = StopSignal()
        let threads = ThreadGroup(heartbeats: heartbeats)
        threads.repeating("afterimage-test-slow", every: 3600, until: stop) { _ in }
        // Waiting for an hour is not a stall: the wait beats every second.
        Thread.sleep(forTimeInterval: 2.5)  // asserting that nothing happens for longer than the tolerance
        #expect(heartbeats.stalled().isEmpty)
        let began = ContinuousClock.now
        stop.stop()
        #expect(threads.join(timeout: .seconds(3)))
        #expect(ContinuousClock.now - began < .seconds(2))
    }
}

@Suite("The daemon's stop budget and the unit")
struct StopBudgetTests {
    /// A daemon built from the defaults (nothing is started, nothing is contacted).
    func defaultDaemon() throws -> (Daemon, String) {
        let spool = NSTemporaryDirectory() + "afterimage-budget-\(UUID().uuidString)"
        var settings = Settings()
        settings.database.url = "postgresql://nobody@127.0.0.1:1/none"
        settings.storage.endpoint = "http://127.0.0.1:1"
        settings.storage.bucket = "b"
        settings.storage.accessKeyID = "k"
        settings.storage.secretAccessKey = "s"
        settings.workers.spoolDirectory = spool
        settings.replicate.apiToken = "r8_token"
        return (try Daemon(settings: settings, logger: Logger(label: "test"), watchdogInterval: .seconds(15)), spool)
    }

    @Test("components in start order; TimeoutStopSec= in the unit exceeds the stop budget of the defaults")
    func unitOutlastsTheStop() throws {
        let (daemon, spool) = try defaultDaemon()
        defer { try? FileManager.default.removeItem(atPath: spool) }
        #expect(
            daemon.componentNames == [
                "database pool", "database startup", "spool sweeper", "archive workers", "intake committers", "lookup readers",
                "lookup refresher", "lookup cache invalidator", "retention", "reconciler", "http server",
                "queue monitor", "watchdog",
            ])
        let unit = try String(contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("systemd/afterimage.service"), encoding: .utf8)
        let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix("TimeoutStopSec=") })
        let seconds = try #require(Int(line.dropFirst("TimeoutStopSec=".count)))
        #expect(daemon.stopBudget < .seconds(seconds), "stop budget \(daemon.stopBudget) does not fit TimeoutStopSec=\(seconds)")
    }
}
