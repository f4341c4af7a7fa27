/// The pure state of one server address's connection pool: idle connections, leases, waiters, limits.
///
/// No NIO and no clock of its own: every event carries `now` (nanoseconds on any monotonic clock), and every
/// decision comes back as a value the owner carries out (create a connection, hand one to a waiter, close some).
public struct PoolStateMachine<Connection: Hashable & Sendable, Waiter: Hashable & Sendable>: Sendable {
    public struct Settings: Sendable, Equatable {
        public var maxSize: Int
        public var minSize: Int
        /// Nanoseconds; 0 = never.
        public var idleTimeout: UInt64
        /// Nanoseconds; 0 = never.
        public var lifetime: UInt64
        /// true: hand out the longest-idle connection first (FIFO); false: the most recently used (LIFO).
        public var roundRobin: Bool

        public init(maxSize: Int, minSize: Int, idleTimeout: UInt64, lifetime: UInt64, roundRobin: Bool) {
            self.maxSize = maxSize
            self.minSize = minSize
            self.idleTimeout = idleTimeout
            self.lifetime = lifetime
            self.roundRobin = roundRobin
        }
    }

    struct IdleEntry: Sendable {
        var connection: Connection
        var since: UInt64
    }

    public enum LeaseResult: Sendable, Equatable {
        /// Use this connection now.
        case leased(Connection)
        /// Wait; if `createConnection`, start opening one new server connection.
        case wait(createConnection: Bool)
    }

    public enum ReturnResult: Sendable, Equatable {
        /// Give the connection to this waiter.
        case handOver(Connection, to: Waiter)
        /// Kept idle.
        case keptIdle
        /// Close it (too old, or the pool shrank); `createConnection` if a waiter now needs a replacement.
        case close(Connection, createConnection: Bool)
    }

    /// What the pool knows about one open connection. One table for both facts, so a lease and a release each
    /// cost one hash lookup (they run on every transaction).
    struct Member: Sendable {
        var createdAt: UInt64
        var leased: Bool
    }

    public var settings: Settings
    private(set) var idle: [IdleEntry] = []
    /// Open connections, idle or leased.
    private(set) var members: [Connection: Member] = [:]
    public private(set) var leasedCount = 0
    public private(set) var connecting = 0
    private(set) var waiters: [Waiter] = []
    private var waiterHead = 0

    public init(settings: Settings) {
        self.settings = settings
    }

    public var idleCount: Int { idle.count }
    public var waitingCount: Int { waiters.count - waiterHead }
    /// Connections that exist or are being opened.
    public var totalCount: Int { idle.count + leasedCount + connecting }

    // MARK: events

    /// A client wants a connection. `prefer` picks among idle connections (e.g. one on the client's event loop).
    public mutating func leaseRequested(by waiter: Waiter, prefer: (Connection) -> Bool = { _ in true }) -> LeaseResult {
        if let index = pickIdle(prefer: prefer) {
            let entry = idle.remove(at: index)
            markLeased(entry.connection)
            return .leased(entry.connection)
        }
        waiters.append(waiter)
        return .wait(createConnection: reserveCreationIfNeeded())
    }

    /// A new server connection finished its startup.
    public mutating func connectionOpened(_ connection: Connection, now: UInt64) -> ReturnResult {
        connecting -= 1
        if let waiter = nextWaiter() {
            members[connection] = Member(createdAt: now, leased: true)
            leasedCount += 1
            return .handOver(connection, to: waiter)
        }
        members[connection] = Member(createdAt: now, leased: false)
        idle.append(IdleEntry(connection: connection, since: now))
        return .keptIdle
    }

    /// Opening a connection failed. Returns the waiters that can no longer be served by anything in flight
    /// (no connection exists or is being opened), so the owner can fail them instead of letting them time out.
    public mutating func connectionFailed() -> [Waiter] {
        connecting -= 1
        guard totalCount == 0 else { return [] }
        let stranded = Array(waiters[waiterHead...])
        waiters.removeAll()
        waiterHead = 0
        return stranded
    }

    /// A leased connection came back healthy.
    /// `prefer` may pick a waiter among the first `preferenceWindow` ones (e.g. one on the connection's event
    /// loop); the oldest waiter is served otherwise, so no waiter is overtaken by more than the window.
    public mutating func connectionReleased(_ connection: Connection, now: UInt64,
                                            prefer: (Waiter) -> Bool = { _ in true }) -> ReturnResult {
        // One lookup; the entry is then changed through its index.
        guard let position = members.index(forKey: connection), members.values[position].leased else {
            return .keptIdle
        }
        if settings.lifetime > 0, now &- members.values[position].createdAt >= settings.lifetime {
            members.remove(at: position)
            leasedCount -= 1
            return .close(connection, createConnection: reserveCreationIfNeeded())
        }
        if totalCount > settings.maxSize {
            // The pool was shrunk (reload) while this connection was out.
            members.remove(at: position)
            leasedCount -= 1
            return .close(connection, createConnection: false)
        }
        if let waiter = nextWaiter(prefer: prefer) {
            return .handOver(connection, to: waiter)  // stays leased
        }
        members.values[position].leased = false
        leasedCount -= 1
        idle.append(IdleEntry(connection: connection, since: now))
        return .keptIdle
    }

    /// A connection is gone (broken, closed by the server, or closed by us). Safe to call for unknown connections.
    /// Returns whether a replacement should be opened for waiters.
    public mutating func connectionClosed(_ connection: Connection) -> Bool {
        if let member = members.removeValue(forKey: connection) {
            if member.leased {
                leasedCount -= 1
            } else if let index = idle.firstIndex(where: { $0.connection == connection }) {
                idle.remove(at: index)
            }
        }
        return reserveCreationIfNeeded()
    }

    /// A waiter gave up (timeout, disconnect). Returns false if it was not waiting any more (already served).
    /// Leases an idle connection if there is one, without queueing (health checks reuse idle connections).
    public mutating func takeIdle() -> Connection? {
        guard !idle.isEmpty else { return nil }
        let entry = idle.removeLast()
        markLeased(entry.connection)
        return entry.connection
    }

    /// Leases the idle connection `matching` picks, if any, without queueing.
    public mutating func takeIdle(where matching: (Connection) -> Bool) -> Connection? {
        guard let index = idle.lastIndex(where: { matching($0.connection) }) else { return nil }
        let entry = idle.remove(at: index)
        markLeased(entry.connection)
        return entry.connection
    }

    /// Removes and returns every waiter (the pool is being replaced).
    public mutating func takeWaiters() -> [Waiter] {
        let taken = Array(waiters[waiterHead...])
        waiters.removeAll()
        waiterHead = 0
        return taken
    }

    public mutating func waiterCancelled(_ waiter: Waiter) -> Bool {
        guard let index = waiters[waiterHead...].firstIndex(of: waiter) else { return false }
        waiters.remove(at: index)
        return true
    }

    /// Calls `mark` on each idle connection that has been idle since before `cutoff`.
    public func markIdle(since cutoff: UInt64, _ mark: (Connection) -> Void) {
        for entry in idle where entry.since < cutoff { mark(entry.connection) }
    }

    /// Periodic sweep: idle connections past `idleTimeout` (above `minSize`) or past `lifetime` are closed;
    /// returns them and how many connections to open to reach `minSize` (none without `topUp`: the pool cannot log
    /// in to its servers before a client has).
    public mutating func sweep(now: UInt64, topUp: Bool = true) -> (close: [Connection], open: Int) {
        var close: [Connection] = []
        var kept: [IdleEntry] = []
        var remaining = totalCount
        for entry in idle {
            let tooOld = settings.lifetime > 0
                && (members[entry.connection].map { now &- $0.createdAt >= settings.lifetime } ?? false)
            let tooIdle = settings.idleTimeout > 0 && now &- entry.since >= settings.idleTimeout && remaining > settings.minSize
            if tooOld || tooIdle {
                close.append(entry.connection)
                members[entry.connection] = nil
                remaining -= 1
            } else {
                kept.append(entry)
            }
        }
        idle = kept
        let open = topUp ? max(0, settings.minSize - totalCount) : 0
        connecting += open
        return (close, open)
    }

    /// Removes every idle connection (e.g. the pool is being retired); leased ones close when returned.
    public mutating func drainIdle() -> [Connection] {
        let drained = idle.map(\.connection)
        for connection in drained { members[connection] = nil }
        idle.removeAll()
        return drained
    }

    // MARK: helpers

    /// How many of the oldest waiters a `prefer` predicate may choose among.
    public static var preferenceWindow: Int { 8 }

    /// Takes the waiter a returned connection goes to, if anyone waits.
    private mutating func nextWaiter(prefer: (Waiter) -> Bool = { _ in true }) -> Waiter? {
        if waiterHead < waiters.count {
            var chosen = waiterHead
            let end = min(waiters.count, waiterHead + Self.preferenceWindow)
            if !prefer(waiters[waiterHead]), let index = waiters[(waiterHead + 1)..<end].firstIndex(where: prefer) {
                chosen = index
            }
            let waiter = waiters[chosen]
            if chosen == waiterHead {
                waiterHead += 1
                // Served waiters stay in the array until compaction: an empty queue is compacted at once, so no
                // finished client is kept alive by a pool with nobody waiting.
                if waiterHead == waiters.count {
                    waiters.removeAll(keepingCapacity: true)
                    waiterHead = 0
                } else if waiterHead > 32 && waiterHead * 2 > waiters.count {
                    waiters.removeFirst(waiterHead)
                    waiterHead = 0
                }
            } else {
                waiters.remove(at: chosen)
            }
            return waiter
        }
        return nil
    }

    private mutating func markLeased(_ connection: Connection) {
        members[connection]?.leased = true
        leasedCount += 1
    }

    /// Opens a connection only while waiters outnumber connections being opened and the limit allows.
    private mutating func reserveCreationIfNeeded() -> Bool {
        guard waitingCount > connecting, totalCount < settings.maxSize else { return false }
        connecting += 1
        return true
    }

    private func pickIdle(prefer: (Connection) -> Bool) -> Int? {
        guard !idle.isEmpty else { return nil }
        if settings.roundRobin {
            return idle.firstIndex(where: { prefer($0.connection) }) ?? 0
        }
        return idle.lastIndex(where: { prefer($0.connection) }) ?? idle.count - 1
    }
}
