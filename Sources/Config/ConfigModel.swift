/// The typed configuration model: PgCat's keys (general, pools.<db>.users, pools.<db>.shards) plus our additions.
///
/// Durations keep PgCat's units: milliseconds unless the name says otherwise (`banTime`, `dnsMaxTtl` and the TCP
/// keepalive values are seconds). Optional per-pool/per-user overrides fall back user -> pool -> general; use the
/// `effective...` helpers in `ConfigModel+Effective.swift` instead of resolving by hand.

public enum PoolMode: String, Sendable, Equatable, Codable, CaseIterable {
    case transaction, session
}

public enum LoadBalancingMode: String, Sendable, Equatable, Codable, CaseIterable {
    case random
    case leastOutstandingConnections = "loc"
}

public enum ServerRole: String, Sendable, Equatable, Codable, CaseIterable {
    case primary, replica, auto
}

public enum DefaultRole: String, Sendable, Equatable, Codable, CaseIterable {
    case any, primary, replica
}

public enum ShardingFunction: String, Sendable, Equatable, Codable, CaseIterable {
    case pgBigintHash = "pg_bigint_hash"
    case sha1
}

public enum AuthType: String, Sendable, Equatable, Codable, CaseIterable {
    case md5
    case scramSHA256 = "scram-sha-256"
    case trust
}

public enum ClientTLSMode: String, Sendable, Equatable, Codable, CaseIterable {
    case disable, allow, require
}

/// What runs the client and server connections: the pooler's own epoll event loop (Linux) or SwiftNIO's.
public enum IOEngine: String, Sendable, Equatable, Codable, CaseIterable {
    case epoll, nio
}

public struct PgCatConfig: Sendable, Equatable {
    public var general: GeneralConfig
    /// Pools in file order; the key is the database name clients connect to.
    public var pools: [NamedPool]
    public var plugins: PluginsConfig?
    /// Path the config was read from (empty when parsed from a string).
    public var path: String

    public init(general: GeneralConfig, pools: [NamedPool], plugins: PluginsConfig? = nil, path: String = "") {
        self.general = general
        self.pools = pools
        self.plugins = plugins
        self.path = path
    }

    public func pool(named name: String) -> PoolConfig? {
        pools.first(where: { $0.name == name })?.config
    }
}

public struct NamedPool: Sendable, Equatable {
    public var name: String
    public var config: PoolConfig
    public init(name: String, config: PoolConfig) {
        self.name = name
        self.config = config
    }
}

public struct GeneralConfig: Sendable, Equatable {
    public var host: String = "0.0.0.0"
    public var port: Int = 6432
    public var enablePrometheusExporter: Bool = false
    public var prometheusExporterPort: Int = 9930
    public var connectTimeout: Int = 1000
    public var idleTimeout: Int = 600_000
    public var serverLifetime: Int = 3_600_000
    public var serverRoundRobin: Bool = true
    public var idleClientInTransactionTimeout: Int = 0
    /// PgBouncer's query_timeout (ms, 0 = off): a request the server has not answered in this long ends the
    /// client's session and the server connection (hung servers, silent network paths).
    public var queryTimeout: Int = 0
    public var healthcheckTimeout: Int = 1000
    public var healthcheckDelay: Int = 30_000
    public var shutdownTimeout: Int = 60_000
    /// Seconds.
    public var banTime: Int = 60
    public var logClientConnections: Bool = false
    public var logClientDisconnections: Bool = false
    /// Milliseconds; nil = off.
    public var autoreload: Int? = nil
    /// Event-loop threads; 0 means one per two CPU cores (at least one).
    public var workerThreads: Int = 0
    /// `epoll` (Linux; elsewhere `nio` is used) or `nio`. Read at start only.
    public var ioEngine: IOEngine = .epoll
    public var tcpKeepalivesIdle: Int = 5
    public var tcpKeepalivesCount: Int = 5
    public var tcpKeepalivesInterval: Int = 5
    public var tcpUserTimeout: Int = 10_000
    public var tlsCertificate: String? = nil
    public var tlsPrivateKey: String? = nil
    public var clientTLSMode: ClientTLSMode = .allow
    public var serverTLS: Bool = false
    public var verifyServerCertificate: Bool = false
    public var serverTLSCAFile: String? = nil
    public var adminUsername: String = ""
    public var adminPassword: String = ""
    public var adminAuthType: AuthType = .md5
    public var validateConfig: Bool = true
    public var authQuery: String? = nil
    public var authQueryUser: String? = nil
    public var authQueryPassword: String? = nil
    public var dnsCacheEnabled: Bool = false
    public var dnsMaxTtl: Int = 30
    /// 0 = unlimited.
    public var maxClientConn: Int = 0
    /// Milliseconds a new client has to finish logging in (startup and authentication); 0 = no limit.
    public var clientLoginTimeout: Int = 60_000
    /// Bytes; a frontend message longer than this is refused with 08P01.
    public var maxMessageSize: Int = 64 * 1024 * 1024

    public init() {}
}

public struct PoolConfig: Sendable, Equatable {
    public var poolMode: PoolMode = .transaction
    public var loadBalancingMode: LoadBalancingMode = .random
    public var defaultRole: DefaultRole = .any
    public var queryParserEnabled: Bool = false
    public var queryParserMaxLength: Int? = nil
    public var queryParserReadWriteSplitting: Bool = false
    public var primaryReadsEnabled: Bool = true
    public var connectTimeout: Int? = nil
    public var idleTimeout: Int? = nil
    public var serverLifetime: Int? = nil
    public var checkoutFailureLimit: Int? = nil
    public var shardingFunction: ShardingFunction = .pgBigintHash
    public var automaticShardingKey: String? = nil
    public var shardingKeyRegex: String? = nil
    public var shardIdRegex: String? = nil
    public var regexSearchLimit: Int = 1000
    /// "shard_N", "random" or "random_healthy".
    public var defaultShard: String = "shard_0"
    public var authQuery: String? = nil
    public var authQueryUser: String? = nil
    public var authQueryPassword: String? = nil
    public var cleanupServerConnections: Bool = true
    public var logClientParameterStatusChanges: Bool = false
    public var preparedStatementsCacheSize: Int = 500
    public var dbActivityBasedRouting: Bool = false
    public var dbActivityInitDelay: Int = 100
    public var dbActivityTtl: Int = 900
    public var tableMutationCacheMsTtl: Int = 50
    public var replicaToPrimaryFailover: Bool = false
    public var maxReplicaLagBytes: Int = 0
    public var readYourWritesWindow: Int = 0
    /// Statements with no shard key in a sharded pool run on every shard when that gives the right answer.
    public var fanOut: Bool = false
    public var mlRouting: MLRoutingConfig? = nil
    public var plugins: PluginsConfig? = nil
    /// In index order ("0", "1", ... or list order).
    public var users: [UserConfig] = []
    /// In shard-number order.
    public var shards: [ShardConfig] = []

    public init() {}
}

public struct UserConfig: Sendable, Equatable {
    public var username: String = ""
    /// Plaintext, `md5<32 hex>` or a SCRAM-SHA-256 verifier.
    public var password: String? = nil
    public var authType: AuthType = .scramSHA256
    public var serverUsername: String? = nil
    public var serverPassword: String? = nil
    public var poolSize: Int = 0
    public var minPoolSize: Int = 0
    public var poolMode: PoolMode? = nil
    public var serverLifetime: Int? = nil
    public var statementTimeout: Int = 0
    public var connectTimeout: Int? = nil
    public var idleTimeout: Int? = nil
    /// 0 = unlimited.
    public var maxClientConnections: Int = 0

    public init() {}
}

public struct ShardConfig: Sendable, Equatable {
    public var database: String = ""
    public var servers: [ServerConfig] = []
    public var mirrors: [MirrorConfig] = []
    public init() {}
}

public struct ServerConfig: Sendable, Equatable, Hashable {
    public var host: String
    public var port: Int
    public var role: ServerRole
    public var tags: [String]
    public var weight: Int

    public init(host: String, port: Int, role: ServerRole, tags: [String] = [], weight: Int = 1) {
        self.host = host
        self.port = port
        self.role = role
        self.tags = tags
        self.weight = weight
    }
}

public struct MirrorConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var mirroringTargetIndex: Int
    public init(host: String, port: Int, mirroringTargetIndex: Int) {
        self.host = host
        self.port = port
        self.mirroringTargetIndex = mirroringTargetIndex
    }
}

public enum MLFallback: String, Sendable, Equatable, Codable, CaseIterable {
    case error, replicas, primary
}

public enum MLAffinity: String, Sendable, Equatable, Codable, CaseIterable {
    case rendezvous, none
}

public struct MLRoutingConfig: Sendable, Equatable {
    public var enabled: Bool = false
    public var targetTags: [String] = []
    public var dedicated: Bool = true
    public var inferencePoolSize: Int = 2
    public var affinity: MLAffinity = .rendezvous
    public var affinityReplicas: Int = 1
    public var queueMax: Int = 200
    public var queueTimeout: Int = 2000
    public var statementTimeout: Int = 0
    public var fallback: MLFallback = .error
    public var models: [MLModelOverride] = []
    public init() {}
}

public struct MLModelOverride: Sendable, Equatable {
    public var match: String
    public var statementTimeout: Int? = nil
    public var maxConnectionsPerServer: Int? = nil
    public var fallback: MLFallback? = nil
    public init(match: String) { self.match = match }
}

public struct PluginsConfig: Sendable, Equatable {
    public var prewarmer: PrewarmerPlugin? = nil
    public var queryLogger: EnabledPlugin? = nil
    public var tableAccess: TableAccessPlugin? = nil
    public var intercept: InterceptPlugin? = nil
    public init() {}
}

public struct EnabledPlugin: Sendable, Equatable {
    public var enabled: Bool = false
    public init(enabled: Bool = false) { self.enabled = enabled }
}

public struct PrewarmerPlugin: Sendable, Equatable {
    public var enabled: Bool = false
    public var queries: [String] = []
    public init() {}
}

public struct TableAccessPlugin: Sendable, Equatable {
    public var enabled: Bool = false
    public var tables: [String] = []
    public init() {}
}

public struct InterceptPlugin: Sendable, Equatable {
    public var enabled: Bool = false
    public var queries: [InterceptQuery] = []
    public init() {}
}

public struct InterceptQuery: Sendable, Equatable {
    public var query: String
    /// `[name, type]` pairs.
    public var schema: [[String]]
    public var result: [[String]]
    public init(query: String, schema: [[String]], result: [[String]]) {
        self.query = query
        self.schema = schema
        self.result = result
    }
}

/// Per (pool, user) values after the user -> pool -> general fallback.
public struct EffectiveUserSettings: Sendable, Equatable {
    public var poolMode: PoolMode
    public var poolSize: Int
    public var minPoolSize: Int
    public var connectTimeout: Int
    public var idleTimeout: Int
    public var serverLifetime: Int
    public var statementTimeout: Int
    public var idleClientInTransactionTimeout: Int

    public init(pool: PoolConfig, user: UserConfig, general: GeneralConfig) {
        poolMode = user.poolMode ?? pool.poolMode
        poolSize = user.poolSize
        minPoolSize = user.minPoolSize
        connectTimeout = user.connectTimeout ?? pool.connectTimeout ?? general.connectTimeout
        idleTimeout = user.idleTimeout ?? pool.idleTimeout ?? general.idleTimeout
        serverLifetime = user.serverLifetime ?? pool.serverLifetime ?? general.serverLifetime
        statementTimeout = user.statementTimeout
        idleClientInTransactionTimeout = general.idleClientInTransactionTimeout
    }
}
