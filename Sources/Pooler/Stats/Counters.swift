/// Counters behind SHOW STATS/CLIENTS/SERVERS/POOLS and the Prometheus metrics. They are updated on event loops
/// (relaxed atomic adds, no locks) and read from any thread by the admin console and the exporter.
import Atomics
import NIOCore

/// One relaxed atomic counter.
struct Counter: @unchecked Sendable {
    private let value = ManagedAtomic<Int>(0)
    @inline(__always) func add(_ amount: Int = 1) { value.wrappingIncrement(by: amount, ordering: .relaxed) }
    @inline(__always) var load: Int { value.load(ordering: .relaxed) }
    @inline(__always) func store(_ newValue: Int) { value.store(newValue, ordering: .relaxed) }
}

/// Relaxed atomic Ints in one allocation, owned by a stats object: one allocation per connection rather than one
/// per counter, so that a transaction touches one or two cache lines of a client's counters instead of five
/// separate objects (which missed the cache once clients numbered in the hundreds).
final class CounterSlab: @unchecked Sendable {
    private let base: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    private let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: count)
        base.initialize(repeating: UnsafeAtomic<Int>.Storage(0), count: count)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// The counter at `index`; valid while this slab lives (its owner keeps both).
    subscript(index: Int) -> SlabCounter {
        precondition(index >= 0 && index < count)
        return SlabCounter(pointer: base + index)
    }
}

/// One relaxed atomic counter in a `CounterSlab`: a plain pointer, so using it costs no reference counting.
struct SlabCounter: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    @inline(__always) private var atomic: UnsafeAtomic<Int> { UnsafeAtomic(at: pointer) }
    @inline(__always) func add(_ amount: Int = 1) { atomic.wrappingIncrement(by: amount, ordering: .relaxed) }
    @inline(__always) var load: Int { atomic.load(ordering: .relaxed) }
    @inline(__always) func store(_ newValue: Int) { atomic.store(newValue, ordering: .relaxed) }
    @inline(__always) func exchange(_ newValue: Int) -> Int { atomic.exchange(newValue, ordering: .relaxed) }
}

/// Totals for a server connection, or summed over the connections of one server address.
/// Times are in microseconds (as PgBouncer reports them).
final class ServerStats: Sendable {
    private let slab = CounterSlab(count: 13)
    var transactions: SlabCounter { slab[0] }
    var queries: SlabCounter { slab[1] }
    var errors: SlabCounter { slab[2] }
    var bytesSent: SlabCounter { slab[3] }
    var bytesReceived: SlabCounter { slab[4] }
    var transactionTime: SlabCounter { slab[5] }
    var queryTime: SlabCounter { slab[6] }
    var waitTime: SlabCounter { slab[7] }
    var prepareHits: SlabCounter { slab[8] }
    var prepareMisses: SlabCounter { slab[9] }
    var prepareEvictions: SlabCounter { slab[10] }
    /// Per connection only: statements it holds now, and its state (`ServerState`).
    var prepareCacheSize: SlabCounter { slab[11] }
    var stateValue: SlabCounter { slab[12] }

    var state: ServerState { ServerState(rawValue: stateValue.load) ?? .idle }

    struct Snapshot: Equatable, Sendable {
        var transactions = 0, queries = 0, errors = 0, bytesSent = 0, bytesReceived = 0
        var transactionTime = 0, queryTime = 0, waitTime = 0
        var prepareHits = 0, prepareMisses = 0, prepareEvictions = 0

        static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(transactions: a.transactions + b.transactions, queries: a.queries + b.queries,
                     errors: a.errors + b.errors, bytesSent: a.bytesSent + b.bytesSent,
                     bytesReceived: a.bytesReceived + b.bytesReceived,
                     transactionTime: a.transactionTime + b.transactionTime, queryTime: a.queryTime + b.queryTime,
                     waitTime: a.waitTime + b.waitTime, prepareHits: a.prepareHits + b.prepareHits,
                     prepareMisses: a.prepareMisses + b.prepareMisses,
                     prepareEvictions: a.prepareEvictions + b.prepareEvictions)
        }

        static func - (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(transactions: a.transactions - b.transactions, queries: a.queries - b.queries,
                     errors: a.errors - b.errors, bytesSent: a.bytesSent - b.bytesSent,
                     bytesReceived: a.bytesReceived - b.bytesReceived,
                     transactionTime: a.transactionTime - b.transactionTime, queryTime: a.queryTime - b.queryTime,
                     waitTime: a.waitTime - b.waitTime, prepareHits: a.prepareHits - b.prepareHits,
                     prepareMisses: a.prepareMisses - b.prepareMisses,
                     prepareEvictions: a.prepareEvictions - b.prepareEvictions)
        }
    }

    var snapshot: Snapshot {
        Snapshot(transactions: transactions.load, queries: queries.load, errors: errors.load,
                 bytesSent: bytesSent.load, bytesReceived: bytesReceived.load,
                 transactionTime: transactionTime.load, queryTime: queryTime.load, waitTime: waitTime.load,
                 prepareHits: prepareHits.load, prepareMisses: prepareMisses.load,
                 prepareEvictions: prepareEvictions.load)
    }

    /// Adds a closed connection's totals to an address's.
    func absorb(_ other: Snapshot) {
        transactions.add(other.transactions)
        queries.add(other.queries)
        errors.add(other.errors)
        bytesSent.add(other.bytesSent)
        bytesReceived.add(other.bytesReceived)
        transactionTime.add(other.transactionTime)
        queryTime.add(other.queryTime)
        waitTime.add(other.waitTime)
        prepareHits.add(other.prepareHits)
        prepareMisses.add(other.prepareMisses)
        prepareEvictions.add(other.prepareEvictions)
    }
}

/// A server connection's state as SHOW SERVERS names it (PgBouncer's names).
enum ServerState: Int, Sendable {
    case login = 0, idle, active, used, tested

    var name: String {
        switch self {
        case .login: return "login"
        case .idle: return "idle"
        case .active: return "active"
        case .used: return "used"
        case .tested: return "tested"
        }
    }
}

/// What SHOW CLIENTS reports about one client.
final class ClientStats: Sendable {
    enum State: Int {
        case login = 0, idle, active, waiting

        var name: String {
            switch self {
            case .login: return "login"
            case .idle: return "idle"
            case .active: return "active"
            case .waiting: return "waiting"
            }
        }
    }

    private let slab = CounterSlab(count: 5)
    var transactions: SlabCounter { slab[0] }
    var queries: SlabCounter { slab[1] }
    var errors: SlabCounter { slab[2] }
    /// `State` (starts at 0, `.login`).
    private var stateValue: SlabCounter { slab[3] }
    /// Uptime nanoseconds when the current wait for a server began (0: not waiting; uptime fits an Int).
    private var waitingSince: SlabCounter { slab[4] }

    var state: State { State(rawValue: stateValue.load) ?? .idle }
    func set(_ state: State) { stateValue.store(state.rawValue) }

    func startWaiting(now: NIODeadline) {
        waitingSince.store(Int(truncatingIfNeeded: max(now.uptimeNanoseconds, 1)))
        set(.waiting)
    }

    /// Ends a wait; returns how long it lasted (microseconds).
    @discardableResult
    func stopWaiting(now: NIODeadline) -> Int {
        let since = UInt64(truncatingIfNeeded: waitingSince.exchange(0))
        guard since > 0, now.uptimeNanoseconds > since else { return 0 }
        return Int((now.uptimeNanoseconds - since) / 1000)
    }

    /// How long the current wait has lasted (microseconds; 0 when not waiting).
    func currentWait(now: NIODeadline) -> Int {
        let since = UInt64(truncatingIfNeeded: waitingSince.load)
        guard since > 0, now.uptimeNanoseconds > since else { return 0 }
        return Int((now.uptimeNanoseconds - since) / 1000)
    }
}
