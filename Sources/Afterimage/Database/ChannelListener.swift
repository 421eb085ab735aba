import PQ

/// LISTEN on a connection of its own (a pooled one would be handed to others), reconnecting after
/// failures, until told to stop. The archive workers wake on it; the lookup cache forgets what it names.
struct ChannelListener {
    let databaseURL: String
    let channel: String
    var limits = SessionLimits()
    /// Beaten at least every half second while listening, and on every attempt to connect.
    var heartbeat: Heartbeat?

    /// - Parameters:
    ///   - isRunning: checked between waits (every half second at most).
    ///   - connected: the channel is listened to again; anything sent before was not heard.
    ///   - received: notifications that arrived together.
    ///   - failed: the connection failed or dropped; `pause` follows, then a new connection.
    func run(
        while isRunning: () -> Bool, connected: () -> Void, received: ([PQ.Notification]) -> Void,
        failed: (any Error) -> Void, pause: () -> Void
    ) {
        while isRunning() {
            heartbeat?.beat()
            var connection: Connection?
            do {
                let listener = try Connection.connect(
                    url: databaseURL, connectTimeoutSeconds: Settings.Database.connectTimeoutSeconds,
                    limits: limits)
                connection = listener
                try listener.listen(channel)
                connected()
                while isRunning() {
                    heartbeat?.beat()
                    let batch = try listener.waitForNotifications(timeout: .milliseconds(500))
                    if !batch.isEmpty { received(batch) }
                }
            } catch {
                failed(error)
                pause()
            }
            connection?.close()
        }
    }
}
