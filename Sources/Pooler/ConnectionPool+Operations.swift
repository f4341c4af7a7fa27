/// Operating a pool: retiring it on reload, PAUSE/RESUME, RECONNECT, KILL, and the read-only views SHOW and the
/// metrics take of it.
import Atomics
import Logging
import NIOCore

extension ConnectionPool {
    /// A connection a client (or a fan-out leg) is done with, idle and whole: back to the pool, after a reset when
    /// it carries session state (`resetSession`: DISCARD ALL; SET or PREPARE: RESET ALL, DEALLOCATE ALL).
    func reclaim(_ server: ServerConnection, resetSession: Bool, logger: Logger) {
        if !cleanupServerConnections {
            // PgCat's `cleanup_server_connections: false`: state is kept as it is, so a SET may have changed the
            // login settings applied here.
            if server.dirtySettings { server.appliedSettingsKnown = false }
            server.dirtySettings = false
            server.dirtyPrepared = false
        }
        if server.isCleanlyIdle && !resetSession && !server.isDirty {
            release(server)
            return
        }
        ServerCleanup(server: server, pool: self, resetSession: resetSession, logger: logger).start()
    }

    /// A reload replaced this pool (its clients move to the new one: close what is idle now, and the rest as it
    /// comes back), or removed it (its clients stay until they leave, on connections of its own; `hasSuccessor`
    /// says which, set before).
    func retire() {
        retired.store(true, ordering: .relaxed)
        let replaced = hasSuccessor.load(ordering: .relaxed)
        let waiters: [WaiterRef] = lock.withLock {
            guard replaced else {
                // Removed: the clients waiting here stay queued and are served as connections come back. No
                // RESUME can name this pool any more, so a PAUSE in force ends with it.
                pausedFlag.store(false, ordering: .relaxed)
                defer { pausedWaiters.removeAll() }
                return pausedWaiters
            }
            var taken = pausedWaiters
            pausedWaiters.removeAll()
            taken += modelWaiters.values.flatMap { $0.values.flatMap { $0 } }
            modelWaiters.removeAll()
            for slot in slots { taken += slot.machine.takeWaiters() }
            return taken
        }
        closeIdle()
        for ref in waiters { askAgain(ref.waiter) }
    }

    /// A waiter whose connection did not come (a retired pool, a failed check) asks again: here, or in the pool
    /// that replaced this one.
    func askAgain(_ waiter: LeaseWaiter) {
        let replaced = isRetired && hasSuccessor.load(ordering: .relaxed)
        waiter.eventLoop.execute { replaced ? waiter.poolReplaced() : waiter.leaseAgain() }
    }

    var isPaused: Bool { paused }

    /// PAUSE: clients that need a connection wait (up to their connect_timeout) until RESUME; transactions in
    /// progress finish. Idle connections are closed now, the others as their transactions end (`release`), as
    /// PgBouncer's PAUSE leaves none open.
    func pause() {
        lock.withLock { pausedFlag.store(true, ordering: .relaxed) }
        closeIdle()
    }

    func resume() {
        let waiters: [WaiterRef] = lock.withLock {
            pausedFlag.store(false, ordering: .relaxed)
            defer { pausedWaiters.removeAll() }
            return pausedWaiters
        }
        for ref in waiters {
            let waiter = ref.waiter
            waiter.eventLoop.execute { waiter.leaseAgain() }
        }
    }

    /// RECONNECT: every connection is replaced; idle ones now, leased ones when released.
    func reconnect() {
        reconnectEpoch.add()
        closeIdle()
    }

    /// Closes every connection, leased ones included (KILL).
    func closeAll() {
        let servers = lock.withLock { slots.flatMap { $0.live.values } }
        for server in servers { server.close() }
    }

    /// One server connection as SHOW SERVERS reports it.
    struct ServerInfo {
        var id: Int
        var address: ServerAddress
        /// Its slot in `slots` (a tagged server's inference pool has the same address as its ordinary one).
        var slotIndex: Int
        var state: ServerState
        var applicationName: String
        var createdAt: NIODeadline
        var stats: ServerStats.Snapshot
        var prepareCacheSize: Int
    }

    func serverInfos() -> [ServerInfo] {
        let servers = lock.withLock { slots.flatMap { slot in slot.live.values.map { (slot.index, $0) } } }
        return servers.map { slotIndex, server in
            ServerInfo(id: server.id, address: server.address, slotIndex: slotIndex, state: server.stats.state,
                       applicationName: server.lastApplicationName.withLockedValue { $0 },
                       createdAt: server.createdAt, stats: server.stats.snapshot,
                       prepareCacheSize: server.stats.prepareCacheSize.load)
        }.sorted { $0.id < $1.id }
    }

    /// Totals per server address: closed connections plus open ones.
    func addressTotals() -> [(address: ServerAddress, role: String, totals: ServerStats.Snapshot)] {
        let perSlot = lock.withLock { slots.map { ($0, Array($0.live.values)) } }
        return perSlot.map { slot, servers in
            (slot.address, slot.currentRole, servers.reduce(slot.closedTotals.snapshot) { $0 + $1.stats.snapshot })
        }
    }

    /// The most connections a slot opens: `pool_size`, or `inference_pool_size` for a server's inference pool.
    func maxConnections(of slot: ServerSlot) -> Int {
        slot.isInference ? ml?.inferencePoolSize ?? settings.poolSize : settings.poolSize
    }

    /// Connections per address (opening included), for SHOW DATABASES `current_connections`.
    func connectionCounts() -> [Int] {
        lock.withLock { slots.map { $0.live.count } }
    }
}
