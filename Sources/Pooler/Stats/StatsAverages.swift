/// SHOW STATS averages, recomputed every stats period (15 s, as PgCat and PgBouncer): per-second rates of the
/// counts and bytes, and per-transaction / per-query averages of the times (microseconds).
import NIOConcurrencyHelpers
import NIOCore

struct StatsKey: Hashable {
    var database: String
    var user: String
    var slotIndex: Int

    init(pool: ConnectionPool, slotIndex: Int) {
        self.database = pool.database
        self.user = pool.user
        self.slotIndex = slotIndex
    }
}

struct StatsAverages: Equatable {
    var transactions = 0, queries = 0, bytesReceived = 0, bytesSent = 0, errors = 0
    var transactionTime = 0, queryTime = 0, waitTime = 0

    /// Averages over `seconds` from the difference of two snapshots.
    init(from old: ServerStats.Snapshot, to new: ServerStats.Snapshot, seconds: Double) {
        let d = new - old
        let perSecond = { (value: Int) in seconds > 0 ? Int((Double(value) / seconds).rounded()) : 0 }
        transactions = perSecond(d.transactions)
        queries = perSecond(d.queries)
        bytesReceived = perSecond(d.bytesReceived)
        bytesSent = perSecond(d.bytesSent)
        errors = perSecond(d.errors)
        transactionTime = d.transactions > 0 ? d.transactionTime / d.transactions : 0
        queryTime = d.queries > 0 ? d.queryTime / d.queries : 0
        waitTime = d.transactions > 0 ? d.waitTime / d.transactions : 0
    }

    init() {}
}

final class StatsAverager: @unchecked Sendable {
    static let period: TimeAmount = .seconds(15)
    private let lock = NIOLock()
    private var previous: [StatsKey: (snapshot: ServerStats.Snapshot, at: NIODeadline)] = [:]
    private var current: [StatsKey: StatsAverages] = [:]

    func averages(for key: StatsKey) -> StatsAverages {
        lock.withLock { current[key] ?? StatsAverages() }
    }

    /// Takes a new sample of every address's totals.
    func sample(_ totals: [(StatsKey, ServerStats.Snapshot)], now: NIODeadline = .now()) {
        lock.withLock {
            var next: [StatsKey: (snapshot: ServerStats.Snapshot, at: NIODeadline)] = [:]
            for (key, snapshot) in totals {
                if let old = previous[key] {
                    let seconds = Double((now - old.at).nanoseconds) / 1e9
                    current[key] = StatsAverages(from: old.snapshot, to: snapshot, seconds: seconds)
                }
                next[key] = (snapshot, now)
            }
            previous = next
        }
    }
}

extension PoolerRuntime {
    func averages(for key: StatsKey) -> StatsAverages { averager.averages(for: key) }

    /// Called every `StatsAverager.period` by the server's janitor.
    public func sampleStats() {
        var totals: [(StatsKey, ServerStats.Snapshot)] = []
        for pool in allPools {
            for (index, entry) in pool.addressTotals().enumerated() {
                totals.append((StatsKey(pool: pool, slotIndex: index), entry.totals))
            }
        }
        averager.sample(totals)
    }
}
