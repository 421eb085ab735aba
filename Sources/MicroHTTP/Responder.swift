import CMicroHTTPD
import Dispatch
import Synchronization

/// The way back to a suspended request for a `DeferredHandler`'s answer. Call `respond` once, from
/// any thread; later calls are ignored (so are calls after a stopping server answered the request itself
/// at its deadline). A responder dropped without an answer answers 500 itself, so a forgotten path
/// cannot leave a connection (and the server's stop) waiting for ever.
public final class Responder: Sendable {
    private let sink: any AnswerSink

    init(_ sink: any AnswerSink) {
        self.sink = sink
    }

    deinit {
        if !sink.isAnswered {
            sink.answer(.error(status: 500, code: "internal_error", message: "the request was dropped without an answer"))
        }
    }

    /// Queues `response` on the connection (the event thread sends it). Returns false when an answer
    /// was already given.
    @discardableResult
    public func respond(_ response: Response) -> Bool {
        sink.answer(response)
    }
}

/// Where a request's answer goes: a suspended connection (`SuspendedRequest`), or the caller of
/// `Router.respond(to:)` waiting in-process (`AwaitedAnswer`). The first answer wins.
protocol AnswerSink: AnyObject, Sendable {
    var isAnswered: Bool { get }
    /// False when an answer was already given.
    @discardableResult
    func answer(_ response: Response) -> Bool
}

/// An answer a thread waits for in-process, given from whichever thread answers.
final class AwaitedAnswer: AnswerSink {
    private let slot = Mutex<Response?>(nil)
    private let given = DispatchSemaphore(value: 0)

    var isAnswered: Bool { slot.withLock { $0 != nil } }

    @discardableResult
    func answer(_ response: Response) -> Bool {
        let first = slot.withLock { slot -> Bool in
            guard slot == nil else { return false }
            slot = response
            return true
        }
        if first { given.signal() }
        return first
    }

    /// The answer, or nil when none came within `timeout`.
    func wait(timeout: Duration) -> Response? {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        guard given.wait(timeout: .now() + seconds) == .success else { return nil }
        return slot.withLock { $0 }
    }
}
