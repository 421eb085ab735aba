import MicroHTTP
import PQ

/// `GET /metrics`: Prometheus text format. Gauges that describe the world rather than this process
/// (the queue, the pool) are refreshed as the scrape arrives, so a scrape never shows stale figures.
struct MetricsRoute: Sendable {
    let pool: Pool
    let monitor: QueueMonitor

    func register(on router: inout Router) {
        router.add("GET", "/metrics") { _ in
            monitor.refresh()
            AfterimageMetrics.pool(pool)
            return Response(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: AfterimageMetrics.registry.emitToBuffer())
        }
    }
}
