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

/// Totals for a server connection, or summed over the connections of one server address.
/// Times are in microseconds (as PgBouncer reports them).
final class ServerStats: Sendable {
    let transactions = Counter()
    let queries = Counter()
    let errors = Counter()
    let bytesSent = Counter()
    let bytesReceived = Counter()
    let transactionTime = Counter()
    let queryTime = Counter()
    let waitTime = Counter()
    let prepareHits = Counter()
    let prepareMisses = Counter()
    let prepareEvictions = Counter()
    /// Per connection only: statements it holds now, and its state (`ServerState`).
    let prepareCacheSize = Counter()
    let stateValue = Counter()

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

    let transactions = Counter()
    let queries = Counter()
    let errors = Counter()
    private let stateValue = ManagedAtomic<Int>(State.login.rawValue)
    /// Uptime nanoseconds when the current wait for a server began (0: not waiting).
    private let waitingSince = ManagedAtomic<UInt64>(0)

    var state: State { State(rawValue: stateValue.load(ordering: .relaxed)) ?? .idle }
    func set(_ state: State) { stateValue.store(state.rawValue, ordering: .relaxed) }

    func startWaiting(now: NIODeadline) {
        waitingSince.store(max(now.uptimeNanoseconds, 1), ordering: .relaxed)
        set(.waiting)
    }

    /// Ends a wait; returns how long it lasted (microseconds).
    @discardableResult
    func stopWaiting(now: NIODeadline) -> Int {
        let since = waitingSince.exchange(0, ordering: .relaxed)
        guard since > 0, now.uptimeNanoseconds > since else { return 0 }
        return Int((now.uptimeNanoseconds - since) / 1000)
    }

    /// How long the current wait has lasted (microseconds; 0 when not waiting).
    func currentWait(now: NIODeadline) -> Int {
        let since = waitingSince.load(ordering: .relaxed)
        guard since > 0, now.uptimeNanoseconds > since else { return 0 }
        return Int((now.uptimeNanoseconds - since) / 1000)
    }
}
