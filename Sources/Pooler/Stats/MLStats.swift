/// Per (model, server) inference counters behind SHOW ML_MODELS and the `pgcat_ml_*` metrics.
import Metrics
import NIOConcurrencyHelpers

final class MLStats: @unchecked Sendable {
    struct Key: Hashable {
        var model: String
        var server: String
    }

    struct Entry {
        var requests = 0
        var errors = 0
        var coldStarts = 0
        var inFlight = 0
        var spills = 0
        var affinityHits = 0
        /// Microseconds of execution (lease to release), for the average.
        var execMicros = 0
    }

    private let lock = NIOLock()
    private let pool: String
    /// Latency histograms per model (swift-metrics Timers; Prometheus histograms when the exporter is on).
    private var execTimers: [String: Metrics.Timer] = [:]
    private var waitTimers: [String: Metrics.Timer] = [:]

    init(pool: String) {
        self.pool = pool
    }

    /// Records a statement's wait for an inference connection.
    func waited(model: String, nanoseconds: Int64) {
        let timer = lock.withLock {
            if let timer = waitTimers[model] { return timer }
            let timer = Metrics.Timer(label: "pgcat_ml_queue_wait_seconds", dimensions: [("pool", pool), ("model", model)])
            waitTimers[model] = timer
            return timer
        }
        timer.recordNanoseconds(nanoseconds)
    }
    private var entries: [Key: Entry] = [:]
    /// Statements waiting for an inference connection, by model.
    private var queued: [String: Int] = [:]
    private(set) var fallbacks = 0
    private(set) var rejected = 0

    func started(model: String, server: String, cold: Bool, spilled: Bool) {
        lock.withLock {
            var entry = entries[Key(model: model, server: server), default: Entry()]
            entry.requests += 1
            entry.inFlight += 1
            if cold { entry.coldStarts += 1 }
            if spilled { entry.spills += 1 } else { entry.affinityHits += 1 }
            entries[Key(model: model, server: server)] = entry
        }
    }

    func finished(model: String, server: String, micros: Int, failed: Bool) {
        let timer = lock.withLock {
            if let timer = execTimers[model] { return timer }
            let timer = Metrics.Timer(label: "pgcat_ml_exec_seconds", dimensions: [("pool", pool), ("model", model)])
            execTimers[model] = timer
            return timer
        }
        timer.recordMicroseconds(micros)
        lock.withLock {
            var entry = entries[Key(model: model, server: server), default: Entry()]
            entry.inFlight = max(0, entry.inFlight - 1)
            entry.execMicros += micros
            if failed { entry.errors += 1 }
            entries[Key(model: model, server: server)] = entry
        }
    }

    func queue(model: String, delta: Int) {
        lock.withLock { queued[model, default: 0] = max(0, queued[model, default: 0] + delta) }
    }

    func fellBack() { lock.withLock { fallbacks += 1 } }
    func misplacedOne() { lock.withLock { misplaced += 1 } }
    /// GPU inference that ran outside the inference pools because its transaction was routed elsewhere.
    private(set) var misplaced = 0
    func rejectedOne() { lock.withLock { rejected += 1 } }

    func snapshot() -> (entries: [Key: Entry], queued: [String: Int], fallbacks: Int, rejected: Int, misplaced: Int) {
        lock.withLock { (entries, queued, fallbacks, rejected, misplaced) }
    }
}
