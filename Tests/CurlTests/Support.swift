import Curl
import Synchronization

/// Options for talking to the local test server: http allowed, everything bounded.
func localOptions() -> CurlOptions {
    var options = CurlOptions()
    options.allowedProtocols = ["http"]
    options.connectTimeout = .seconds(5)
    options.totalTimeout = .seconds(60)
    return options
}

/// Thread-safe recorder for values seen inside @Sendable policies.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
}

/// Runs `body` and returns the CurlError it threw, or nil if it did not throw.
func curlError<T>(_ body: () throws(CurlError) -> T) -> CurlError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

struct SinkStopped: Error {}
