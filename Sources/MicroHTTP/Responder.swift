import CMicroHTTPD
import Synchronization

/// The way back to a suspended connection for a `DeferredHandler`'s answer. Call `respond` once, from
/// any thread; later calls are ignored. A responder dropped without an answer answers 500 itself, so
/// a forgotten path cannot leave a connection (and the server's stop) waiting for ever.
public final class Responder: Sendable {
    private let core: ServerCore
    private let connection: SuspendedConnection
    private let pending: PendingResponse
    private let answered = Atomic<Bool>(false)

    init(core: ServerCore, connection: SuspendedConnection, pending: PendingResponse) {
        self.core = core
        self.connection = connection
        self.pending = pending
        core.unanswered.add(1, ordering: .relaxed)
    }

    deinit {
        if !answered.load(ordering: .acquiring) {
            respond(.error(status: 500, code: "internal_error", message: "the request was dropped without an answer"))
        }
    }

    /// Queues `response` on the connection (the event thread sends it). Returns false when an answer
    /// was already given.
    @discardableResult
    public func respond(_ response: Response) -> Bool {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        pending.set(response)
        core.resumeGate.withLock { stopping in
            if !stopping { MHD_resume_connection(connection.pointer) }
        }
        core.unanswered.subtract(1, ordering: .releasing)
        return true
    }
}
