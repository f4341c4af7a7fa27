/// The server connections of one (database, user) pair: one sub-pool per server address, each limited to
/// `pool_size`, plus the server parameters clients are told at login.
import Auth
import Config
import Logging
import Atomics
import Failover
import MLRouter
import Sharding
import Foundation
import NIOConcurrencyHelpers
import NIOCore

public final class ConnectionPool: @unchecked Sendable {
    public let database: String
    public let user: String
    public let settings: EffectiveUserSettings
    let slots: [ServerSlot]
    /// Shard 0's servers: where transactions go (sharding picks other shards later).
    let slotsByShard: [[ServerSlot]]
    /// Number of shards, how keys map to them, and where statements without a shard go.
    /// `fan_out`: unkeyed statements run on every shard when that gives the right answer.
    let fanOutEnabled: Bool
    let shardCount: Int
    let sharder: Sharder
    let defaultShard: DefaultShard
    /// `shard_id_regex` / `sharding_key_regex` (comment routing), with `regex_search_limit`.
    let shardIDRegex: NSRegularExpression?
    let shardingKeyRegex: NSRegularExpression?
    let regexSearchLimit: Int
    /// `automatic_sharding_key`.
    let automaticKey: AutomaticSharding.Key?

    enum DefaultShard: Equatable {
        case fixed(Int)
        case random
        case randomHealthy
    }
    /// The inference pools of the servers tagged for ML (`ml_routing.target_tags`), when ML routing is on.
    let inferenceSlots: [ServerSlot]
    /// `ml_routing`, when enabled.
    let ml: MLRoutingConfig?
    /// `ml != nil`, read on every lease (a plain flag: reading `ml` copies the whole config to test it).
    let mlEnabled: Bool
    /// `ml_routing.dedicated`: servers tagged for inference take no ordinary reads.
    let dedicatedInference: Bool
    /// Inference counters per (model, server).
    let mlStats: MLStats
    /// Whether shard 0 has replicas (read/write splitting has a choice to make).
    let hasReplicas: Bool
    let routing: RoutingSettings

    /// The pool's routing settings (PgCat's keys).
    struct RoutingSettings {
        var queryParserEnabled: Bool
        var readWriteSplitting: Bool
        var primaryReadsEnabled: Bool
        var defaultRole: TargetRole
        var loadBalancing: LoadBalancer.Mode
        var replicaToPrimaryFailover: Bool
        /// Texts longer than this (bytes) are not parsed and go to the primary.
        var maxParseLength: Int?
        /// After a client's transaction on the primary, its reads stay on the primary this long (ms; 0 off).
        var readYourWritesWindow: Int

        init(_ pool: PoolConfig) {
            queryParserEnabled = pool.queryParserEnabled
            readWriteSplitting = pool.queryParserEnabled && pool.queryParserReadWriteSplitting
            primaryReadsEnabled = pool.primaryReadsEnabled
            switch pool.defaultRole {
            case .primary: defaultRole = .primary
            case .replica: defaultRole = .replica
            case .any: defaultRole = .any
            }
            loadBalancing = pool.loadBalancingMode == .leastOutstandingConnections ? .leastOutstanding : .random
            replicaToPrimaryFailover = pool.replicaToPrimaryFailover
            maxParseLength = pool.queryParserMaxLength
            readYourWritesWindow = pool.readYourWritesWindow
        }
    }
    /// Server login as configured (`server_username`/`server_password`, else the user's own); see `credentials`.
    let configuredCredentials: ServerCredentials
    /// `auth_query` in force for this pool (pool keys over general ones), nil when off.
    let authQuery: AuthQuerySettings?
    /// The last secret auth_query found for the user and when (under the lock).
    var authQuerySecret: (secret: String, fetchedAt: NIODeadline)?
    /// A lookup in flight, shared by the clients logging in meanwhile (under the lock).
    var authQueryLookup: EventLoopFuture<AuthQuery.Outcome>?
    let connector: ServerConnector
    let keyCache: SCRAMKeyCache?
    let logger: Logger
    let lock = NIOLock()
    /// Server-side names of prepared statements (transaction mode, `prepared_statements_cache_size` > 0).
    let statementNames: StatementNames
    /// What the pool was built from; a reload keeps the pool when this is unchanged.
    let identity: Identity
    /// The pool-level config (SHOW CONFIG, SHOW DATABASES).
    let poolConfig: PoolConfig

    struct Identity: Equatable {
        var pool: PoolConfig
        var user: UserConfig
        var settings: EffectiveUserSettings
        var roundRobin: Bool
        /// The plugins in force (a change of the global block concerns every pool that uses it).
        var plugins: QueryPlugins?
        /// auth_query in force, also when it comes from `general` (a rotated auth_query_password must reach it).
        var authQuery: AuthQuerySettings?

        init(pool: PoolConfig, user: UserConfig, general: GeneralConfig, plugins: QueryPlugins? = nil) {
            var pool = pool
            pool.users = []  // another user's change does not concern this pool
            self.pool = pool
            self.user = user
            self.settings = EffectiveUserSettings(pool: pool, user: user, general: general)
            self.roundRobin = general.serverRoundRobin
            self.plugins = plugins
            self.authQuery = ConnectionPool.authQuery(pool: pool, user: user, general: general)
        }
    }
    /// PgCat's plugins for this pool (nil: none enabled, or the pool's query parser is off).
    let plugins: QueryPlugins?
    /// `plugins` when they read query texts (not only the prewarmer): what the relay checks.
    let queryPlugins: QueryPlugins?
    /// 0 = prepared statements pass through untouched.
    let statementCacheSize: Int
    /// `cleanup_server_connections`: reset session state a client left behind before the next client.
    let cleanupServerConnections: Bool
    /// What logins report, from the first server connection (under the lock; set once).
    var cachedReport: ParameterReport?
    /// Login settings a server has accepted (`StartupSettings.checkKey`), so later logins skip the check (under the
    /// lock; forgotten all at once when full).
    private var checkedSettings: Set<String> = []
    var pausedWaiters: [WaiterRef] = []
    /// Waiters whose connection is being checked before use (ConnectionPool+CheckoutCheck), under the lock: they
    /// still wait, and `cancelWait` withdraws them as it does a queued waiter.
    var waitersInCheck: Set<WaiterRef> = []
    /// Statements waiting for a backend that already runs their model (`max_connections_per_server` reached),
    /// by inference slot and model, under the lock; served before the slot's ordinary waiters.
    var modelWaiters: [Int: [String: [WaiterRef]]] = [:]
    /// Statements queued for a cold connection of a model with `max_connections_per_server`: they count as
    /// backends loading it until they attach (under the lock).
    var coldWaiters: [WaiterRef: (slot: Int, model: String)] = [:]
    /// `max_replica_lag_bytes` (0: off).
    let maxReplicaLagBytes: Int
    /// `general.ban_time` in seconds (updated by reloads).
    let banTime = Counter()
    /// `role: auto`: the newest timeline a primary of each shard was seen on (HealthChecker), under the lock. A
    /// reload that replaces the pool starts over (a cluster rebuilt from scratch behind the same addresses needs one).
    var newestPrimaryTimeline: [Int: UInt32] = [:]
    /// `general.healthcheck_delay` and `healthcheck_timeout` in ms (updated by reloads): a connection idle longer
    /// than the delay is checked before it is used again, within the timeout.
    let checkoutCheckDelay = Counter()
    let checkoutCheckTimeout = Counter()
    /// RECONNECT: connections opened before this epoch are closed when they are next released.
    let reconnectEpoch = Counter()
    let retired = ManagedAtomic(false)
    /// A reload replaced this pool: its connections close as they come back; clients move to the new pool.
    var isRetired: Bool { retired.load(ordering: .relaxed) }
    /// PAUSE is in force. Set under `lock` (with `pausedWaiters`); read without it where a glance will do (the
    /// release path checks it per transaction).
    let pausedFlag = ManagedAtomic(false)
    var paused: Bool { pausedFlag.load(ordering: .relaxed) }
    /// Clients logged in to this pool (they move to its successor after a reload).
    private let clientCount = ManagedAtomic(0)
    /// A reload put another pool in this one's place, which its clients move to; false for a pool a reload removed,
    /// whose clients stay on it until they leave.
    let hasSuccessor = ManagedAtomic(false)

    func clientJoined() { clientCount.wrappingIncrement(ordering: .relaxed) }

    /// The last client of a pool a reload removed is gone: nothing will use its idle connections any more.
    func clientLeft() {
        if clientCount.wrappingDecrementThenLoad(ordering: .relaxed) <= 0, isRetired { closeIdle() }
    }

    /// Whether a connection given back goes (instead of to the idle list): a replaced pool's, or a removed pool's
    /// once its last client has left.
    var retiredConnectionsGo: Bool {
        isRetired && (hasSuccessor.load(ordering: .relaxed) || clientCount.load(ordering: .relaxed) <= 0)
    }

    /// Latency histograms (Prometheus `pgcat_query_duration_seconds` and `pgcat_wait_duration_seconds`); nil
    /// without the exporter, so that nothing is recorded for nobody.
    let queryTimer: LatencyHistogram?
    let waitTimer: LatencyHistogram?
    /// State of the load balancer's random numbers (`PoolRandom`).
    let randomState = PoolRandom.makeState()

    /// CancelRequests forwarded to a server and not answered yet (SHOW POOLS `cl_cancel_req`).
    let cancelsInFlight = Counter()
    /// Server connections being reset before reuse (SHOW POOLS `sv_used`).
    let cleanupsInFlight = Counter()
    var recoveredClientKey: [UInt8]?

    final class ServerSlot: @unchecked Sendable {
        let address: ServerAddress
        let index: Int
        var weight = 1
        /// `role: auto`: what the health checker last saw (1 primary, 0 replica, -1 not known yet).
        let detectedPrimary = ManagedAtomic<Int>(-1)
        /// The replica lags more than `max_replica_lag_bytes` (health checker); kept out of rotation.
        let lagging = ManagedAtomic<Bool>(false)
        /// `role: auto`: the server is not in recovery beside the shard's primary (health checker); banned.
        let stalePrimary = ManagedAtomic<Bool>(false)
        /// The replica's last measured lag in bytes.
        let lagBytes = Counter()
        /// Whether it is the primary now: as configured, or as detected for `role: auto`.
        var isPrimary: Bool {
            switch configuredRole {
            case .primary: return true
            case .replica: return false
            case .auto: return detectedPrimary.load(ordering: .relaxed) == 1
            }
        }
        /// `role: auto` and no health check has answered yet: it may be the primary.
        var roleUnknown: Bool { configuredRole == .auto && detectedPrimary.load(ordering: .relaxed) == -1 }
        /// The role to show (admin console, metrics): as configured, or for `role: auto` as detected (`auto` until a
        /// health check has answered).
        var currentRole: String {
            guard configuredRole == .auto else { return address.role }
            switch detectedPrimary.load(ordering: .relaxed) {
            case 1: return "primary"
            case 0: return "replica"
            default: return "auto"
            }
        }
        /// `address.role`, decided once (every lease asks).
        let configuredRole: ServerHealth.RoleSetting
        var machine: PoolStateMachine<ServerConnection, WaiterRef>
        /// Connections opening or open (under the pool lock), for SHOW SERVERS and the address totals.
        var live: [ObjectIdentifier: ServerConnection] = [:]
        /// Totals of this address's connections that have closed.
        let closedTotals = ServerStats()
        /// Uptime nanoseconds until which the address is banned (0: not banned); read without the lock.
        let bannedUntil = ManagedAtomic<UInt64>(0)
        /// Why and since when (wall clock), under the pool lock.
        var ban: Ban?
        /// The server carries one of `ml_routing.target_tags`.
        var tagged = false
        /// Servers that get a copy of this server's traffic (`mirrors` naming it).
        var mirrors: [ServerAddress] = []
        /// This slot is the server's inference pool (`inference_pool_size`), apart from its ordinary one.
        let isInference: Bool

        init(address: ServerAddress, index: Int, settings: PoolStateMachine<ServerConnection, WaiterRef>.Settings,
             isInference: Bool = false) {
            self.address = address
            self.index = index
            self.isInference = isInference
            self.configuredRole = address.role == "primary" ? .primary : address.role == "replica" ? .replica : .auto
            self.machine = PoolStateMachine(settings: settings)
        }
    }

    init(database: String, user: String, pool: PoolConfig, userConfig: UserConfig, general: GeneralConfig,
         connector: ServerConnector, keyCache: SCRAMKeyCache?, logger: Logger, statementNames: StatementNames? = nil,
         plugins: QueryPlugins? = nil) {
        self.database = database
        self.user = user
        self.statementNames = statementNames ?? StatementNames(capacity: max(10_000, 4 * pool.preparedStatementsCacheSize))
        self.identity = Identity(pool: pool, user: userConfig, general: general, plugins: plugins)
        self.plugins = plugins
        self.queryPlugins = plugins.flatMap { $0.inspectsQueries ? $0 : nil }
        self.mlStats = MLStats(pool: database)
        let dimensions = [("pool", database), ("user", user)]
        let exported = LatencyHistogram.isRecording
        self.queryTimer = exported ? LatencyHistogram.named("pgcat_query_duration_seconds", labels: dimensions) : nil
        self.waitTimer = exported ? LatencyHistogram.named("pgcat_wait_duration_seconds", labels: dimensions) : nil
        self.poolConfig = pool
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
        let ml = pool.mlRouting.flatMap { $0.enabled ? $0 : nil }
        var tagged: [(ServerAddress, Int)] = []
        for (shardIndex, shard) in pool.shards.enumerated() {
            for (index, server) in shard.servers.enumerated() {
                let address = ServerAddress(host: server.host, port: server.port, database: shard.database,
                                            role: server.role.rawValue, shard: shardIndex, index: index)
                let slot = ServerSlot(address: address, index: slots.count, settings: machineSettings)
                slot.weight = server.weight
                slot.mirrors = shard.mirrors.filter { $0.mirroringTargetIndex == index }.map {
                    ServerAddress(host: $0.host, port: $0.port, database: shard.database, role: "mirror",
                                  shard: shardIndex, index: index)
                }
                if let ml, shardIndex == 0, !Set(server.tags).isDisjoint(with: ml.targetTags) {
                    slot.tagged = true
                    tagged.append((address, server.weight))
                }
                slots.append(slot)
            }
        }
        // Each tagged server also gets an inference pool: its own limit, queue and long-lived connections
        // (models load per backend), so inference never takes ordinary connections or delays ordinary queries.
        var inferenceSlots: [ServerSlot] = []
        if let ml {
            let inferenceSettings = PoolStateMachine<ServerConnection, WaiterRef>.Settings(
                maxSize: ml.inferencePoolSize, minSize: 0, idleTimeout: 0, lifetime: 0, roundRobin: false)
            for (address, weight) in tagged {
                let slot = ServerSlot(address: address, index: slots.count, settings: inferenceSettings, isInference: true)
                slot.weight = weight
                slot.tagged = true
                slots.append(slot)
                inferenceSlots.append(slot)
            }
        }
        self.slots = slots
        self.inferenceSlots = inferenceSlots
        self.ml = ml
        self.mlEnabled = ml != nil
        self.dedicatedInference = ml?.dedicated == true
        self.shardCount = max(1, pool.shards.count)
        self.fanOutEnabled = pool.fanOut
        self.slotsByShard = (0..<max(1, pool.shards.count)).map { shard in
            slots.filter { $0.address.shard == shard && !$0.isInference }
        }
        self.hasReplicas = slots.contains { !$0.isInference && $0.address.role != "primary" }
        self.sharder = pool.shardingFunction == .sha1 ? .sha1 : .pgBigintHash
        switch pool.defaultShard {
        case "random": self.defaultShard = .random
        case "random_healthy": self.defaultShard = .randomHealthy
        default: self.defaultShard = .fixed(Int(pool.defaultShard.dropFirst("shard_".count)) ?? 0)
        }
        self.shardIDRegex = pool.shardIdRegex.flatMap { try? NSRegularExpression(pattern: $0) }
        self.shardingKeyRegex = pool.shardingKeyRegex.flatMap { try? NSRegularExpression(pattern: $0) }
        self.regexSearchLimit = pool.regexSearchLimit
        self.automaticKey = pool.automaticShardingKey.flatMap(AutomaticSharding.Key.init)
        self.routing = RoutingSettings(pool)
        self.banTime.store(general.banTime)
        self.checkoutCheckDelay.store(general.healthcheckDelay)
        self.checkoutCheckTimeout.store(general.healthcheckTimeout)
        self.maxReplicaLagBytes = pool.maxReplicaLagBytes
        self.configuredCredentials = ServerCredentials(
            user: userConfig.serverUsername ?? userConfig.username, database: "",
            password: userConfig.serverPassword ?? userConfig.password)
        self.authQuery = Self.authQuery(pool: pool, user: userConfig, general: general)
    }

    /// auth_query looks up the passwords of users listed without one.
    static func authQuery(pool: PoolConfig, user: UserConfig, general: GeneralConfig) -> AuthQuerySettings? {
        user.password == nil ? pool.effectiveAuthQuery(general: general) : nil
    }

    /// How server connections log in: the configured password, else the secret auth_query found, with the ClientKey
    /// recovered from a client's SCRAM proof when the password is a SCRAM verifier.
    var credentials: ServerCredentials {
        var credentials = configuredCredentials
        lock.withLock {
            if credentials.password == nil { credentials.password = authQuerySecret?.secret }
            credentials.scramClientKey = recoveredClientKey
        }
        return credentials
    }

    /// The pool cannot log in to its servers before a client has: auth_query has not found the password yet, or
    /// the password is a SCRAM verifier and no client's proof gave the ClientKey. `min_pool_size` and background
    /// probes wait (a failing login would look like a server fault and ban it).
    var waitsForClientLogin: Bool {
        let credentials = self.credentials
        if authQuery != nil && credentials.password == nil { return true }
        return credentials.password.map(SCRAMVerifier.isVerifier) == true && credentials.scramClientKey == nil
    }

    public var name: String { "\(database)/\(user)" }

    /// Parameters reported to clients at login (from the first server connection); nil until one connected.
    var parameterReport: ParameterReport? { lock.withLock { cachedReport } }

    /// The shard for a statement that names none: `default_shard`.
    func resolvedDefaultShard() -> Int {
        guard shardCount > 1 else { return 0 }
        switch defaultShard {
        case .fixed(let shard):
            return min(shard, shardCount - 1)
        case .random:
            return Int.random(in: 0..<shardCount)
        case .randomHealthy:
            // Shards whose servers are not all banned, at random.
            let now = NIODeadline.now().uptimeNanoseconds
            let healthy = slotsByShard.indices.filter { shard in
                slotsByShard[shard].contains { $0.bannedUntil.load(ordering: .relaxed) <= now }
            }
            return healthy.randomElement() ?? Int.random(in: 0..<shardCount)
        }
    }

    /// A reload's replacement reports what its predecessor's servers reported, until a server says otherwise.
    func inheritServerParameters(from old: ConnectionPool) {
        guard let report = old.parameterReport else { return }
        lock.withLock { if cachedReport == nil { cachedReport = report } }
    }

    /// A reload's replacement logs in to servers as its predecessor did when nothing about the login changed: the
    /// secret auth_query found and the ClientKey recovered from a client's SCRAM proof carry over. Without them a
    /// pool whose password is a stored SCRAM verifier could open no connection until a new client logged in, and
    /// its connected clients (who never log in again) got "no usable password" on every query.
    func inheritLogins(from old: ConnectionPool) {
        // (Also when the auth_query settings changed, a rotated auth_query_password say: what the lookup found is
        // the user's own secret, still good for the server logins of clients already connected.)
        guard old.configuredCredentials.user == configuredCredentials.user,
              old.configuredCredentials.password == configuredCredentials.password,
              (old.authQuery == nil) == (authQuery == nil) else { return }
        let (secret, key) = old.lock.withLock { (old.authQuerySecret, old.recoveredClientKey) }
        lock.withLock {
            if authQuerySecret == nil { authQuerySecret = secret }
            if recoveredClientKey == nil { recoveredClientKey = key }
        }
    }

    /// Remembers the ClientKey recovered from a client's SCRAM login, for servers holding the same verifier.
    func rememberClientKey(_ key: [UInt8]) {
        lock.withLock {
            let password = configuredCredentials.password ?? authQuerySecret?.secret
            guard password.map(SCRAMVerifier.isVerifier) == true else { return }
            recoveredClientKey = key
        }
    }

    // MARK: leasing

    /// The server for a new transaction of `role` (LoadBalancer decides; one server needs no decision).
    /// With `affinityKey` (CPU inference: `project:<name>`), the servers the role allows are chosen by rendezvous
    /// hashing of the key with bounded load, so a project's model stays loaded on few backends.
    private func pickSlot(role: TargetRole, affinityKey: String? = nil, shard: Int = 0) -> ServerSlot {
        let shardSlots = slotsByShard[min(max(shard, 0), slotsByShard.count - 1)]
        if shardSlots.count == 1 { return shardSlots[0] }
        let now = NIODeadline.now().uptimeNanoseconds
        if let affinityKey, let slot = pickByAffinity(affinityKey, in: shardSlots, role: role, now: now) { return slot }
        // Every transaction with more than one server comes here: the candidates live on the stack.
        let byLoad = routing.loadBalancing == .leastOutstanding
        let index = withUnsafeTemporaryAllocation(of: LoadBalancer.Candidate.self, capacity: shardSlots.count) {
            buffer -> Int? in
            var count = 0
            for position in shardSlots.indices {
                guard let candidate = candidate(at: position, in: shardSlots, role: role, now: now) else { continue }
                buffer.initializeElement(at: count, to: candidate)
                count += 1
            }
            let candidates = UnsafeMutableBufferPointer(rebasing: buffer[..<count])
            if byLoad {
                lock.withLock {
                    for i in candidates.indices {
                        let machine = shardSlots[candidates[i].index].machine
                        candidates[i].busy = machine.leasedCount + machine.waitingCount
                    }
                }
            }
            var random = PoolRandom(state: randomState)
            return LoadBalancer.pick(candidates, role: role, mode: routing.loadBalancing,
                                     replicaToPrimaryFailover: routing.replicaToPrimaryFailover, using: &random)?.index
        }
        return shardSlots[index ?? 0]
    }

    /// The load balancer's view of `shardSlots[position]`; nil when it takes no part (`dedicated`: servers tagged
    /// for inference take no ordinary reads, while writes still reach a tagged primary). `busy` is left at 0.
    private func candidate(at position: Int, in shardSlots: [ServerSlot], role: TargetRole,
                           now: UInt64) -> LoadBalancer.Candidate? {
        let slot = shardSlots[position]
        if dedicatedInference && role != .primary && slot.tagged && !slot.isPrimary { return nil }
        return LoadBalancer.Candidate(
            index: position, isPrimary: slot.isPrimary, weight: slot.weight,
            banned: slot.bannedUntil.load(ordering: .relaxed) > now || slot.lagging.load(ordering: .relaxed),
            roleUnknown: slot.roleUnknown)
    }

    /// CPU inference: rendezvous hashing of the key over the servers the role allows, with bounded load.
    private func pickByAffinity(_ key: String, in shardSlots: [ServerSlot], role: TargetRole, now: UInt64) -> ServerSlot? {
        let busy = lock.withLock { shardSlots.map { $0.machine.leasedCount + $0.machine.waitingCount } }
        let eligible = shardSlots.indices.compactMap { candidate(at: $0, in: shardSlots, role: role, now: now) }
            .filter { !$0.banned && (role == .any || $0.isPrimary == (role == .primary)) }
        let servers = eligible.map { candidate in
            ModelPlacement.Server(id: "\(shardSlots[candidate.index].address.host):\(shardSlots[candidate.index].address.port)",
                                  weight: candidate.weight, load: busy[candidate.index])
        }
        guard let choice = ModelPlacement.place(model: key, servers: servers) else { return nil }
        return shardSlots[eligible[choice.index].index]
    }

    enum LeaseOutcome {
        case leased(ServerConnection)
        case waiting
    }

    /// Called on the waiter's event loop. Either returns a connection now or later calls `leaseGranted`/`leaseFailed`.
    /// `bypassPause`: a login borrowing a server only to learn the parameters to report is not held by PAUSE.
    func lease(for waiter: LeaseWaiter, role: TargetRole? = nil, bypassPause: Bool = false,
               affinityKey: String? = nil, shard: Int? = nil) -> LeaseOutcome {
        let wanted = role ?? routing.defaultRole
        let slot = pickSlot(role: wanted, affinityKey: affinityKey, shard: shard ?? resolvedDefaultShard())
        let loop = waiter.eventLoop
        if wanted == .primary, !slot.isPrimary, !slot.roleUnknown {
            // The shard has no primary (a pool of replicas, or `auto` servers that are all replicas now): say so
            // (SPEC 1d: 08006 naming pool, shard and role) rather than let the replica refuse the write.
            let failure = PoolError.serverUnavailable(
                pool: name, server: "shard \(slot.address.shard) primary", reason: "the shard has no primary")
            loop.execute { waiter.leaseFailed(failure) }
            return .waiting
        }
        let result: PoolStateMachine<ServerConnection, WaiterRef>.LeaseResult? = lock.withLock {
            if paused && !bypassPause {
                pausedWaiters.append(WaiterRef(waiter: waiter))
                return nil
            }
            return slot.machine.leaseRequested(by: WaiterRef(waiter: waiter), prefer: { $0.eventLoop === loop })
        }
        switch result {
        case .leased(let server)?:
            if server.checkBeforeUse {
                checkThenDeliver(server, to: waiter, slot: slot)
                return .waiting
            }
            return .leased(server)
        case .wait(let create)?:
            if create { open(slot, on: loop) }
            return .waiting
        case nil:
            return .waiting  // PAUSE: queued until RESUME
        }
    }

    /// Stops waiting; false if a connection is already on its way to the waiter.
    func cancelWait(_ waiter: LeaseWaiter) -> Bool {
        let ref = WaiterRef(waiter: waiter)
        return lock.withLock {
            if let index = pausedWaiters.firstIndex(of: ref) {
                pausedWaiters.remove(at: index)
                return true
            }
            if removeModelWaiter(ref) { return true }
            if waitersInCheck.remove(ref) != nil { return true }  // (its connection goes back when checked)
            for slot in slots where slot.machine.waiterCancelled(ref) { return true }
            return false
        }
    }

    /// A clean, idle connection comes back. `at`: when it became idle (uptime nanoseconds), if the caller just read
    /// the clock; otherwise it is read here.
    func settingsWereChecked(_ key: String) -> Bool {
        lock.withLock { checkedSettings.contains(key) }
    }

    func noteSettingsChecked(_ key: String) {
        lock.withLock {
            if checkedSettings.count >= 1_000 { checkedSettings.removeAll() }
            checkedSettings.insert(key)
        }
    }

    func release(_ server: ServerConnection, at readyAt: UInt64 = 0) {
        guard let slot = slot(of: server) else { server.close(); return }
        if server.cancelsInFlight.any,
           server.cancelsInFlight.deferUntilDone({ [self] in release(server) }) {
            return  // a cancel on its way to this backend would hit the next client's statement
        }
        if server.epoch < reconnectEpoch.load
            || (retiredConnectionsGo || paused)
                && lock.withLock({ slot.machine.waitingCount == 0 }) {
            // RECONNECT asked for fresh connections, the pool was replaced by a reload, or PAUSE leaves no server
            // connection open once its transaction is over (as PgBouncer's)
            discard(server)
            return
        }
        if slot.isInference, let waiter = takeModelWaiter(for: server, in: slot) {
            deliver(server, to: waiter.waiter)  // stays leased: a statement waiting for this warm backend
            return
        }
        let now = readyAt > 0 ? readyAt : NIODeadline.now().uptimeNanoseconds
        let loop = server.eventLoop
        server.checkBeforeUse = false  // (just used, or just probed: idle from now)
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

    func connectionClosed(_ server: ServerConnection) {
        guard let slot = slot(of: server) else { return }
        if !server.closedByPooler && !slot.isPrimary {
            // The replica went away under us (shutdown, crash, network): keep new transactions off it for a while.
            ban(slot: slot, reason: "ServerClosed")
        }
        let create = lock.withLock { slot.machine.connectionClosed(server) }
        forget(server, in: slot)
        if create { open(slot, on: server.eventLoop) }
        if slot.isInference {
            // Statements waiting for a backend that runs their model: one fewer runs it now, so ask again (they
            // may load it elsewhere, or get a new connection).
            let waiters: [WaiterRef] = lock.withLock {
                guard let byModel = modelWaiters.removeValue(forKey: slot.index) else { return [] }
                return byModel.values.flatMap { $0 }
            }
            for ref in waiters {
                let waiter = ref.waiter
                waiter.eventLoop.execute { waiter.leaseAgain() }
            }
        }
    }

    /// Takes a closed connection out of the registry (once) and keeps its totals for the address.
    func forget(_ server: ServerConnection, in slot: ServerSlot) {
        let removed = lock.withLock { slot.live.removeValue(forKey: ObjectIdentifier(server)) }
        if removed != nil { slot.closedTotals.absorb(server.stats.snapshot) }
    }

    private func slot(of server: ServerConnection) -> ServerSlot? {
        server.slotIndex < slots.count ? slots[server.slotIndex] : nil
    }

    func carryOut(_ result: PoolStateMachine<ServerConnection, WaiterRef>.ReturnResult, slot: ServerSlot) {
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

    func deliver(_ server: ServerConnection, to waiter: LeaseWaiter) {
        if waiter.eventLoop.inEventLoop {
            waiter.leaseGranted(server)
        } else {
            waiter.eventLoop.execute { waiter.leaseGranted(server) }
        }
    }
}
