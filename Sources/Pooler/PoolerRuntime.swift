/// Everything the client sessions share: the pools built from the config, the connector, client limits and the
/// cancel-key registry. The pool map is swapped as a whole (reload), never mutated in place.
import Auth
import Config
import Logging
import MLRouter
import NIOConcurrencyHelpers
import NIOCore
import PostgresWire
import QueryParser

public final class PoolerRuntime: @unchecked Sendable {
    public struct PoolKey: Hashable, Sendable {
        public var database: String
        public var user: String
    }

    /// One pool database's users and their pools.
    struct Snapshot: @unchecked Sendable {
        var config: PgCatConfig
        var pools: [PoolKey: ConnectionPool]
        /// database -> username -> user config, for client authentication.
        var users: [String: [String: UserAuth]]
    }

    /// How a user authenticates to the pooler, precomputed at load (no PBKDF2 per login).
    struct UserAuth: Sendable {
        var config: UserConfig
        var scramVerifier: SCRAMVerifier?
    }

    let lock = NIOLock()
    var snapshot: Snapshot
    public let connector: ServerConnector
    public let keyCache = SCRAMKeyCache()
    public let logger: Logger
    private var clientCount = 0
    private var clientsPerUser: [PoolKey: Int] = [:]
    var cancelTargets: [BackendKeyData: CancelTarget] = [:]
    private var shuttingDown = false
    /// Admin `RELOAD` and SIGHUP: re-reads the config file (set by the server; nil in tests).
    public var reloadHandler: (@Sendable () -> Result<PgCatConfig, ReloadError>)?
    /// Builds TLS contexts from a config being loaded (set by the server; nil in tests: no TLS).
    public var tlsPreparer: TLSPreparer?
    let clientTLSBox = NIOLockedValueBox<(any ClientTLSProvider)?>(nil)
    /// Admin `SHUTDOWN`: starts the graceful shutdown (set by the server).
    public var shutdownHandler: (@Sendable () -> Void)?
    /// When the runtime started (SHOW CONFIG / uptime) and how the admin console authenticates.
    var adminAuth: UserAuth?
    let averager = StatsAverager()
    /// Addresses with a health probe in flight (at most one per address).
    let probesInFlight = NIOLockedValueBox<Set<AddressKey>>([])
    /// The PostgreSQL parser with its cache of facts per query text, shared by all pools.
    public let queryParser = QueryParser()
    /// ML classification per statement text and search_path (the parser's facts are cached; classifying them again
    /// is not free).
    let mlClassifications = NIOLockedValueBox<[MLClassificationKey: MLClassificationEntry]>([:])
    /// Pools replaced by reloads, kept while their connections drain (under `lock`).
    var retiredPools: [ConnectionPool] = []
    /// Client sockets kept open after a FATAL for the client to read it (ClientConnection.closeClientAfterMessage),
    /// bounded so that a flood of refused logins cannot hold descriptors.
    let lingeringClients = Counter()
    static let maxLingeringClients = 1024

    /// A strong reference, dropped when the client leaves (clientGone): a weak one would give every client a side
    /// table, which makes every retain and release of it take the slow path.
    struct CancelTarget { var client: ClientConnection? }

    public init(config: PgCatConfig, connector: ServerConnector, logger: Logger) {
        self.connector = connector
        self.logger = logger
        self.snapshot = Snapshot(config: config, pools: [:], users: [:])
        self.snapshot = build(config, reusing: nil).snapshot
        self.adminAuth = Self.adminAuth(config.general, reusing: nil)
    }

    /// Pools for `config`; with `previous`, a pool whose settings did not change is kept as it is (connections,
    /// statements, counters), and a changed one is replaced but keeps its statement names (clients hold them).
    func build(_ config: PgCatConfig, reusing previous: Snapshot?) -> (snapshot: Snapshot, replaced: [ConnectionPool]) {
        var pools: [PoolKey: ConnectionPool] = [:]
        var users: [String: [String: UserAuth]] = [:]
        var replaced: [ConnectionPool] = []
        for named in config.pools {
            var poolUsers: [String: UserAuth] = [:]
            let plugins = QueryPlugins(config.effectivePlugins(for: named.config))
            for user in named.config.users {
                let key = PoolKey(database: named.name, user: user.username)
                let identity = ConnectionPool.Identity(pool: named.config, user: user, general: config.general,
                                                       plugins: plugins)
                let old = previous?.pools[key]
                if let old, old.identity == identity {
                    pools[key] = old
                } else {
                    let fresh = ConnectionPool(database: named.name, user: user.username, pool: named.config,
                                               userConfig: user, general: config.general, connector: connector,
                                               keyCache: keyCache, logger: logger, statementNames: old?.statementNames,
                                               plugins: plugins)
                    if let old {
                        if old.isPaused { fresh.pause() }  // PAUSE (or KILL) lasts until RESUME, across reloads
                        fresh.inheritServerParameters(from: old)  // logins need no server (a paused pool has none)
                        fresh.inheritLogins(from: old)
                        replaced.append(old)
                    }
                    pools[key] = fresh
                }
                if let oldAuth = previous?.users[named.name]?[user.username], oldAuth.config == user {
                    poolUsers[user.username] = oldAuth  // no new PBKDF2 for an unchanged user
                } else {
                    poolUsers[user.username] = UserAuth(config: user, scramVerifier: Self.verifier(for: user))
                }
            }
            users[named.name] = poolUsers
        }
        if let previous {
            for (key, pool) in previous.pools where pools[key] == nil { replaced.append(pool) }
        }
        return (Snapshot(config: config, pools: pools, users: users), replaced)
    }

    static func adminAuth(_ general: GeneralConfig, reusing old: UserAuth?) -> UserAuth? {
        // With trust and no admin_username, any user name is let in (as PgCat's trust admin).
        guard !general.adminUsername.isEmpty || general.adminAuthType == .trust else { return nil }
        var user = UserConfig()
        user.username = general.adminUsername
        user.password = general.adminPassword
        user.authType = general.adminAuthType
        if let old, old.config == user { return old }
        return UserAuth(config: user, scramVerifier: verifier(for: user))
    }

    private static func verifier(for user: UserConfig) -> SCRAMVerifier? {
        guard user.authType == .scramSHA256, let password = user.password else { return nil }
        if password.hasPrefix("SCRAM-SHA-256$") { return SCRAMVerifier(parsing: password) }
        if password.hasPrefix("md5"), password.count == 35 { return nil }
        var salt = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = rng.next() }
        return SCRAMVerifier.derive(password: password, salt: salt, iterations: 4096)
    }

    public var config: PgCatConfig { lock.withLock { snapshot.config } }
    var general: GeneralConfig { lock.withLock { snapshot.config.general } }

    func pool(database: String, user: String) -> ConnectionPool? {
        lock.withLock { snapshot.pools[PoolKey(database: database, user: user)] }
    }

    func hasDatabase(_ database: String) -> Bool {
        lock.withLock { snapshot.users[database] != nil }
    }

    func userAuth(database: String, user: String) -> UserAuth? {
        lock.withLock { snapshot.users[database]?[user] }
    }

    var allPools: [ConnectionPool] { lock.withLock { Array(snapshot.pools.values) } }

    // MARK: client accounting

    /// Admits a connection under `max_client_conn` once its startup packet named a database (logged in or not;
    /// admin logins are not counted); false at the limit.
    func admitClient() -> Bool {
        lock.withLock {
            let limit = snapshot.config.general.maxClientConn
            if limit > 0 && clientCount >= limit { return false }
            clientCount += 1
            return true
        }
    }

    /// Admits an authenticated client under its user's `max_client_connections`; false at the limit. Only after
    /// the password: a stranger must not be able to fill a user's slots, nor learn from a 53300 that it exists.
    func admitUser(database: String, user: String) -> Bool {
        lock.withLock {
            let key = PoolKey(database: database, user: user)
            let userLimit = snapshot.users[database]?[user]?.config.maxClientConnections ?? 0
            if userLimit > 0 && clientsPerUser[key, default: 0] >= userLimit { return false }
            clientsPerUser[key, default: 0] += 1
            return true
        }
    }

    func clientLeft(database: String, user: String, admittedForUser: Bool) {
        lock.withLock {
            clientCount -= 1
            if admittedForUser { clientsPerUser[PoolKey(database: database, user: user), default: 1] -= 1 }
        }
    }

    public var connectedClients: Int { lock.withLock { clientCount } }

    func registerCancelKey(_ key: BackendKeyData, for client: ClientConnection) {
        lock.withLock { cancelTargets[key] = CancelTarget(client: client) }
    }

    func unregisterCancelKey(_ key: BackendKeyData) {
        _ = lock.withLock { cancelTargets.removeValue(forKey: key) }
    }

    /// A CancelRequest with this key arrived on a new connection. `done` runs (on any thread) once the cancel has
    /// been handled: sent to the server and answered (it closed its cancel connection, or 5 s passed), or found
    /// nothing to cancel.
    func cancel(_ key: BackendKeyData, done: @escaping @Sendable () -> Void) {
        guard let client = lock.withLock({ cancelTargets[key]?.client }) else { return done() }
        client.eventLoop.execute {
            guard let delivered = client.forwardCancel() else { return done() }
            delivered.whenComplete { _ in done() }
        }
    }

    // MARK: lifecycle

    public var isShuttingDown: Bool { lock.withLock { shuttingDown } }

    /// Starts the drain: idle clients are told 57P01 and closed now, clients in a transaction when it ends.
    public func beginShutdown() {
        let clients = lock.withLock {
            shuttingDown = true
            return cancelTargets.values.compactMap(\.client)
        }
        for client in clients {
            client.eventLoop.execute { client.shutdownRequested() }
        }
    }

    /// Periodic janitor work: idle timeouts, lifetimes, min_pool_size, query_timeout.
    public func sweep(loops: @escaping () -> EventLoop) {
        // (Also pools a reload retired whose clients are still on them: their idle connections age the same way.)
        for pool in allPools + retiredPoolsWithConnections { pool.sweep(loops: loops) }
        let limit = Int64(general.queryTimeout)
        if limit > 0 {
            for client in clients where client.stats.state == .active {
                client.eventLoop.execute { client.checkQueryTimeout(limit: limit) }
            }
        }
    }

    public func closeIdleServers() {
        for pool in allPools { pool.closeIdle() }
    }
}
