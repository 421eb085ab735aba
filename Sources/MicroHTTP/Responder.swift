import CMicroHTTPD
import Synchronization

/// The way back to a suspended connection for a `DeferredHandler`'s answer. Call `respond` once, from
/// any thread; later calls are ignored (so are calls after a stopping server answered the request itself
/// at its deadline). A responder dropped without an answer answers 500 itself, so a forgotten path
/// cannot leave a connection (and the server's stop) waiting for ever.
public final class Responder: Sendable {
    private let request: SuspendedRequest

    init(request: SuspendedRequest) {
        self.request = request
    }

    deinit {
        if !request.isAnswered {
            request.answer(.error(status: 500, code: "internal_error", message: "the request was dropped without an answer"))
        }
    }

    /// Queues `response` on the connection (the event thread sends it). Returns false when an answer
    /// was already given.
    @discardableResult
    public func respond(_ response: Response) -> Bool {
        request.answer(response)
    }
}
