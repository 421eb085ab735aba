import PQ
import Testing

@Suite struct NotifyTests {
    @Test func notificationsPassBetweenConnections() throws {
        let listener = try TestDatabase.connect()
        let sender = try TestDatabase.connect()
        defer {
            listener.close()
            sender.close()
        }
        let channel = TestDatabase.uniqueName("pq_channel")
        try listener.listen(channel)
        try sender.notify(channel, payload: "héllo 1")
        try sender.notify(channel, payload: "")
        var received: [PQ.Notification] = []
        try waitForCount(2, into: &received, on: listener)
        #expect(received.map(\.channel) == [channel, channel])
        #expect(received.map(\.payload) == ["héllo 1", ""])
        #expect(received.allSatisfy { $0.backendPID == sender.backendPID })

        try listener.unlisten(channel)
        try sender.notify(channel, payload: "after unlisten")
        #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
    }

    @Test func notifyInsideATransactionArrivesOnlyAtCommit() throws {
        let listener = try TestDatabase.connect()
        let sender = try TestDatabase.connect()
        defer {
            listener.close()
            sender.close()
        }
        let channel = TestDatabase.uniqueName("pq_channel")
        try listener.listen(channel)
        try sender.transaction { transaction in
            try transaction.notify(channel, payload: "committed")
            #expect(try listener.waitForNotifications(timeout: .milliseconds(100)).isEmpty)
        }
        _ = try? sender.transaction { transaction in
            try transaction.notify(channel, payload: "rolled back")
            throw PQError(code: .invalidUse, message: "abort on purpose")
        }
        var received: [PQ.Notification] = []
        try waitForCount(1, into: &received, on: listener)
        #expect(received.map(\.payload) == ["committed"])
        #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
    }

    @Test func channelNamesAreIdentifiersNotSQL() throws {
        let listener = try TestDatabase.connect()
        let sender = try TestDatabase.connect()
        defer {
            listener.close()
            sender.close()
        }
        let channel = "pq \"odd\"; select 1; -- " + String(TestDatabase.uniqueName("c").suffix(12))
        try listener.listen(channel)
        try sender.notify(channel, payload: "x")
        var received: [PQ.Notification] = []
        try waitForCount(1, into: &received, on: listener)
        #expect(received.first?.channel == channel)
        #expect(pqErrorCode { try listener.listen(String(repeating: "c", count: 64)) } == .invalidParameter)
        #expect(pqErrorCode { try listener.listen("") } == .invalidParameter)
    }

    @Test func waitingWithNothingToReceiveTimesOutWithEmptyList() throws {
        let listener = try TestDatabase.connect()
        defer { listener.close() }
        try listener.listen(TestDatabase.uniqueName("pq_quiet"))
        var result: [PQ.Notification] = [PQ.Notification]()
        let took = try elapsed { result = try listener.waitForNotifications(timeout: .milliseconds(300)) }
        #expect(result.isEmpty)
        #expect(took >= .milliseconds(290))
        #expect(took < .seconds(3))
        // The connection still works afterwards.
        #expect(try listener.query("select 1").count == 1)
    }

    /// Collects notifications until `count` arrived, with an overall deadline.
    private func waitForCount(_ count: Int, into received: inout [PQ.Notification], on connection: Connection) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while received.count < count, ContinuousClock.now < deadline {
            received += try connection.waitForNotifications(timeout: .seconds(1))
        }
        #expect(received.count == count)
    }
}
