/// The server connections of one (database, user) pair: one sub-pool per server address, each limited to
/// `pool_size`, plus the server parameters clients are told at login.
import Auth
import Config
import Logging
import NIOConcurrencyHelpers
import NIOCore

public final class ConnectionPool: @unchecked Sendable {
    public let database: String
    public let user: String
    public let settings: EffectiveUserSettings
    let slots: [ServerSlot]
    /// Where new transactions go (see `candidates(in:role:)`); fixed for the pool's life.
    private let candidates: [ServerSlot]
    let credentials: ServerCredentials
    private let connector: ServerConnector
    private let keyCache: SCRAMKeyCache?
    private let logger: Logger
    private let lock = NIOLock()
    /// Server-side names of prepared statements (transaction mode, `prepared_statements_cache_size` > 0).
    let statementNames = StatementNames()
    /// 0 = prepared statements pass through untouched.
    let statementCacheSize: Int
    /// `cleanup_server_connections`: reset session state a client left behind before the next client.
    let cleanupServerConnections: Bool
    private var cachedParameters: [String: String]?
    private var recoveredClientKey: [UInt8]?

    final class ServerSlot: @unchecked Sendable {
        let address: ServerAddress
        let index: Int
        var machine: PoolStateMachine<ServerConnection, WaiterRef>
        init(address: ServerAddress, index: Int, settings: PoolStateMachine<ServerConnection, WaiterRef>.Settings) {
            self.address = address
            self.index = index
            self.machine = PoolStateMachine(settings: settings)
        }
    }

    init(database: String, user: String, pool: PoolConfig, userConfig: UserConfig, general: GeneralConfig,
         connector: ServerConnector, keyCache: SCRAMKeyCache?, logger: Logger) {
        self.database = database
        self.user = user
        self.settings = EffectiveUserSettings(pool: pool, user: userConfig, general: general)
        self.statementCacheSize = pool.preparedStatementsCacheSize
        self.cleanupServerConnections = pool.cleanupServerConnections
        self.connector = connector
        self.keyCache = keyCache
        var logger = logger
        logger[metadataKey: "pool"] = "\(database)/\(user)"
        self.logger = logger
        let machineSettings = PoolStateMachine<ServerConnection, WaiterRef>.Settings(
            maxSize: settings.poolSize, minSize: settings.minPoolSize,
            idleTimeout: UInt64(settings.idleTimeout) * 1_000_000,
            lifetime: UInt64(settings.serverLifetime) * 1_000_000,
            roundRobin: general.serverRoundRobin)
        var slots: [ServerSlot] = []
        for (shardIndex, shard) in pool.shards.enumerated() {
            for (index, server) in shard.servers.enumerated() {
                let address = ServerAddress(host: server.host, port: server.port, database: shard.database,
                                            role: server.role.rawValue, shard: shardIndex, index: index)
                slots.append(ServerSlot(address: address, index: slots.count, settings: machineSettings))
            }
        }
        self.slots = slots
        self.candidates = Self.candidates(in: slots, role: pool.defaultRole)
        self.credentials = ServerCredentials(
            user: userConfig.serverUsername ?? userConfig.username, database: "",
            password: userConfig.serverPassword ?? userConfig.password)
    }

    public var name: String { "\(database)/\(user)" }

    /// Parameters reported to clients at login (from the first server connection); nil until one connected.
    var serverParameters: [String: String]? { lock.withLock { cachedParameters } }

    /// Remembers the ClientKey recovered from a client's SCRAM login, for servers holding the same verifier.
    func rememberClientKey(_ key: [UInt8]) {
        guard credentials.password?.hasPrefix("SCRAM-SHA-256$") == true else { return }
        lock.withLock { recoveredClientKey = key }
    }

    // MARK: leasing

    private func pickSlot() -> ServerSlot {
        candidates.count == 1 ? candidates[0] : candidates.randomElement()!
    }

    /// Slots a new transaction may use: shard 0, filtered by the pool's default role (all of shard 0 if none fit).
    private static func candidates(in slots: [ServerSlot], role: DefaultRole) -> [ServerSlot] {
        let shard0 = slots.filter { $0.address.shard == 0 }
        let filtered: [ServerSlot]
        switch role {
        case .primary: filtered = shard0.filter { $0.address.role != "replica" }
        case .replica: filtered = shard0.filter { $0.address.role == "replica" }
        case .any: filtered = shard0
        }
        return filtered.isEmpty ? shard0 : filtered
    }

    enum LeaseOutcome {
        case leased(ServerConnection)
        case waiting
    }

    /// Called on the waiter's event loop. Either returns a connection now or later calls `leaseGranted`/`leaseFailed`.
    func lease(for waiter: LeaseWaiter) -> LeaseOutcome {
        let slot = pickSlot()
        let loop = waiter.eventLoop
        let now = NIODeadline.now().uptimeNanoseconds
        let result = lock.withLock {
            slot.machine.leaseRequested(by: WaiterRef(waiter: waiter), now: now, prefer: { $0.eventLoop === loop })
        }
        switch result {
        case .leased(let server):
            return .leased(server)
        case .wait(let create):
            if create { open(slot, on: loop) }
            return .waiting
        }
    }

    /// Stops waiting; false if a connection is already on its way to the waiter.
    func cancelWait(_ waiter: LeaseWaiter) -> Bool {
        let ref = WaiterRef(waiter: waiter)
        return lock.withLock {
            for slot in slots where slot.machine.waiterCancelled(ref) { return true }
            return false
        }
    }

    /// A clean, idle connection comes back.
    func release(_ server: ServerConnection) {
        guard let slot = slot(of: server) else { server.close(); return }
        let now = NIODeadline.now().uptimeNanoseconds
        let loop = server.eventLoop
        let result = lock.withLock {
            // Prefer a waiter on the connection's own event loop: its relay then needs no thread hop.
            slot.machine.connectionReleased(server, now: now, prefer: { $0.waiter.eventLoop === loop })
        }
        carryOut(result, slot: slot)
    }

    /// A connection is gone or unusable: drop it and close it.
    func discard(_ server: ServerConnection) {
        server.close()
        connectionClosed(server)
    }

    private func connectionClosed(_ server: ServerConnection) {
        guard let slot = slot(of: server) else { return }
        let create = lock.withLock { slot.machine.connectionClosed(server) }
        if create { open(slot, on: server.eventLoop) }
    }

    private func slot(of server: ServerConnection) -> ServerSlot? {
        server.slotIndex < slots.count ? slots[server.slotIndex] : nil
    }

    private func carryOut(_ result: PoolStateMachine<ServerConnection, WaiterRef>.ReturnResult, slot: ServerSlot) {
        switch result {
        case .keptIdle:
            break
        case .handOver(let server, let ref):
            deliver(server, to: ref.waiter)
        case .close(let server, let create):
            server.close()
            if create { open(slot, on: server.eventLoop) }
        }
    }

    private func deliver(_ server: ServerConnection, to waiter: LeaseWaiter) {
        if waiter.eventLoop.inEventLoop {
            waiter.leaseGranted(server)
        } else {
            waiter.eventLoop.execute { waiter.leaseGranted(server) }
        }
    }

    // MARK: opening and sweeping

    private static let ids = NIOLockedValueBox(0)

    private func open(_ slot: ServerSlot, on loop: EventLoop) {
        let id = Self.ids.withLockedValue { $0 += 1; return $0 }
        var credentials = self.credentials
        credentials.database = slot.address.database
        credentials.scramClientKey = lock.withLock { recoveredClientKey }
        let server = ServerConnection(id: id, address: slot.address, slotIndex: slot.index, credentials: credentials, eventLoop: loop,
                                      keyCache: keyCache, connector: connector, statementCacheSize: statementCacheSize,
                                      logger: logger)
        let timeout = TimeAmount.milliseconds(Int64(max(settings.connectTimeout, 1)))
        let connected = connector.connect(host: slot.address.host, port: slot.address.port, on: loop,
                                          timeout: timeout, handler: server)
        connected.whenFailure { error in server.connectFailed(error) }
        let startupTimeout = loop.scheduleTask(in: timeout + .seconds(5)) {
            server.close()
        }
        connected.flatMap { server.startupFuture }.whenComplete { result in
            startupTimeout.cancel()
            switch result {
            case .success:
                server.onClose = { [weak self] server in self?.connectionClosed(server) }
                self.lock.withLock {
                    if self.cachedParameters == nil { self.cachedParameters = server.parameters }
                }
                let now = NIODeadline.now().uptimeNanoseconds
                let outcome = self.lock.withLock { slot.machine.connectionOpened(server, now: now) }
                self.logger.debug("server connection opened", metadata: ["server_id": "\(server.id)"])
                self.carryOut(outcome, slot: slot)
            case .failure(let error):
                server.close()
                self.logger.warning("could not open server connection", metadata: [
                    "server": "\(slot.address)", "error": "\(error)"])
                let stranded = self.lock.withLock { slot.machine.connectionFailed() }
                let failure = PoolError.serverUnavailable(pool: self.name, server: "\(slot.address)", reason: "\(error)")
                for ref in stranded {
                    let waiter = ref.waiter
                    waiter.eventLoop.execute { waiter.leaseFailed(failure) }
                }
            }
        }
    }

    /// Closes idle connections past `idle_timeout`/`server_lifetime` and opens up to `min_pool_size`.
    func sweep(loops: () -> EventLoop) {
        let now = NIODeadline.now().uptimeNanoseconds
        for slot in slots {
            let (close, open) = lock.withLock { slot.machine.sweep(now: now) }
            for server in close { server.close() }
            for _ in 0..<open { self.open(slot, on: loops()) }
        }
    }

    /// Closes every idle connection (pool retired or shutting down).
    func closeIdle() {
        for slot in slots {
            let drained = lock.withLock { slot.machine.drainIdle() }
            for server in drained { server.close() }
        }
    }

    /// Counts for observability.
    func counts() -> (idle: Int, active: Int, connecting: Int, waiting: Int) {
        lock.withLock {
            slots.reduce(into: (0, 0, 0, 0)) { acc, slot in
                acc.0 += slot.machine.idleCount
                acc.1 += slot.machine.leasedCount
                acc.2 += slot.machine.connecting
                acc.3 += slot.machine.waitingCount
            }
        }
    }
}
