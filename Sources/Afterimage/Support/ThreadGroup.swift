import Foundation

/// Starts a named thread counted in `group`, so whoever stops the component can wait for all of its
/// threads with `group.wait()`. Used for the long-lived loops (archive workers, intake committers) that
/// block in libpq or libcurl and so must not sit on Swift concurrency's few cooperative threads.
func startCountedThread(_ name: String, in group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
    group.enter()
    let thread = Thread {
        defer { group.leave() }
        body()
    }
    thread.name = name
    thread.start()
}
