/// The table of defaults, rendered from the model's own initial values; docs/configuration.md embeds it verbatim.

public struct ConfigDefault: Sendable, Equatable {
    /// `general`, `pools.<name>`, `pools.<name>.users.<n>`, ...
    public var section: String
    public var key: String
    /// The default as written in a config file, or a note such as `required` or `general.connect_timeout`.
    public var value: String
}

public enum ConfigDefaults {
    public static var rows: [ConfigDefault] {
        general + pool + user + shard + mlRouting + plugins
    }

    /// The Markdown table in docs/configuration.md (a test keeps the two identical).
    public static func markdownTable() -> String {
        var lines = ["| section | key | default |", "|---|---|---|"]
        for row in rows {
            let value = row.value.hasPrefix("(") ? row.value : "`\(row.value)`"
            lines.append("| `\(row.section)` | `\(row.key)` | \(value) |")
        }
        return lines.joined(separator: "\n")
    }

    private static func rows(_ section: String, _ pairs: KeyValuePairs<String, String>) -> [ConfigDefault] {
        pairs.map { ConfigDefault(section: section, key: $0.key, value: $0.value) }
    }

    private static func show(_ value: Int?, _ fallback: String = "(none)") -> String {
        value.map(String.init) ?? fallback
    }
    private static func show(_ value: String?, _ fallback: String = "(none)") -> String { value ?? fallback }
    private static func show(_ value: [String]) -> String { "[" + value.joined(separator: ", ") + "]" }

    private static var general: [ConfigDefault] {
        let g = GeneralConfig()
        return rows("general", [
            "host": g.host, "port": "\(g.port)", "enable_prometheus_exporter": "\(g.enablePrometheusExporter)",
            "prometheus_exporter_port": "\(g.prometheusExporterPort)", "connect_timeout": "\(g.connectTimeout)",
            "idle_timeout": "\(g.idleTimeout)", "server_lifetime": "\(g.serverLifetime)",
            "server_round_robin": "\(g.serverRoundRobin)",
            "idle_client_in_transaction_timeout": "\(g.idleClientInTransactionTimeout)",
            "query_timeout": "\(g.queryTimeout)",
            "healthcheck_timeout": "\(g.healthcheckTimeout)", "healthcheck_delay": "\(g.healthcheckDelay)",
            "shutdown_timeout": "\(g.shutdownTimeout)", "ban_time": "\(g.banTime)",
            "log_client_connections": "\(g.logClientConnections)",
            "log_client_disconnections": "\(g.logClientDisconnections)", "autoreload": show(g.autoreload, "(off)"),
            "worker_threads": "\(g.workerThreads)", "io_engine": g.ioEngine.rawValue, "tcp_keepalives_idle": "\(g.tcpKeepalivesIdle)",
            "tcp_keepalives_count": "\(g.tcpKeepalivesCount)", "tcp_keepalives_interval": "\(g.tcpKeepalivesInterval)",
            "tcp_user_timeout": "\(g.tcpUserTimeout)", "tls_certificate": show(g.tlsCertificate),
            "tls_private_key": show(g.tlsPrivateKey), "client_tls_mode": g.clientTLSMode.rawValue,
            "server_tls": "\(g.serverTLS)", "verify_server_certificate": "\(g.verifyServerCertificate)",
            "server_tls_ca_file": show(g.serverTLSCAFile),
            "admin_username": g.adminUsername.isEmpty ? "(required unless admin_auth_type is trust)" : g.adminUsername,
            "admin_password": g.adminPassword.isEmpty ? "(required unless admin_auth_type is trust)" : g.adminPassword,
            "admin_auth_type": g.adminAuthType.rawValue, "validate_config": "\(g.validateConfig)",
            "auth_query": show(g.authQuery), "auth_query_user": show(g.authQueryUser),
            "auth_query_password": show(g.authQueryPassword), "dns_cache_enabled": "\(g.dnsCacheEnabled)",
            "dns_max_ttl": "\(g.dnsMaxTtl)", "max_client_conn": "\(g.maxClientConn)",
            "client_login_timeout": "\(g.clientLoginTimeout)",
            "max_message_size": "\(g.maxMessageSize)",
        ])
    }

    private static var pool: [ConfigDefault] {
        let p = PoolConfig()
        return rows("pools.<name>", [
            "pool_mode": p.poolMode.rawValue, "load_balancing_mode": p.loadBalancingMode.rawValue,
            "default_role": p.defaultRole.rawValue, "query_parser_enabled": "\(p.queryParserEnabled)",
            "query_parser_max_length": show(p.queryParserMaxLength, "(no limit)"),
            "query_parser_read_write_splitting": "\(p.queryParserReadWriteSplitting)",
            "primary_reads_enabled": "\(p.primaryReadsEnabled)",
            "connect_timeout": show(p.connectTimeout, "(general.connect_timeout)"),
            "idle_timeout": show(p.idleTimeout, "(general.idle_timeout)"),
            "server_lifetime": show(p.serverLifetime, "(general.server_lifetime)"),
            "checkout_failure_limit": show(p.checkoutFailureLimit, "(no limit)"),
            "sharding_function": p.shardingFunction.rawValue,
            "automatic_sharding_key": show(p.automaticShardingKey), "sharding_key_regex": show(p.shardingKeyRegex),
            "shard_id_regex": show(p.shardIdRegex), "regex_search_limit": "\(p.regexSearchLimit)",
            "default_shard": p.defaultShard, "auth_query": show(p.authQuery, "(general.auth_query)"),
            "auth_query_user": show(p.authQueryUser, "(general.auth_query_user)"),
            "auth_query_password": show(p.authQueryPassword, "(general.auth_query_password)"),
            "cleanup_server_connections": "\(p.cleanupServerConnections)",
            "log_client_parameter_status_changes": "\(p.logClientParameterStatusChanges)",
            "prepared_statements_cache_size": "\(p.preparedStatementsCacheSize)",
            "db_activity_based_routing": "\(p.dbActivityBasedRouting)",
            "db_activity_init_delay": "\(p.dbActivityInitDelay)",
            "db_activity_ttl": "\(p.dbActivityTtl)", "table_mutation_cache_ms_ttl": "\(p.tableMutationCacheMsTtl)",
            "replica_to_primary_failover": "\(p.replicaToPrimaryFailover)",
            "max_replica_lag_bytes": "\(p.maxReplicaLagBytes)", "read_your_writes_window": "\(p.readYourWritesWindow)",
            "fan_out": "\(p.fanOut)",
            "ml_routing": p.mlRouting == nil ? "(off)" : "(set)",
            "plugins": p.plugins == nil ? "(the global plugins block)" : "(set)",
        ])
    }

    private static var user: [ConfigDefault] {
        let u = UserConfig()
        return rows("pools.<name>.users.<n>", [
            "username": u.username.isEmpty ? "(required)" : u.username,
            "password": show(u.password, "(required unless auth_type is trust or auth_query is set)"),
            "auth_type": u.authType.rawValue, "server_username": show(u.serverUsername, "(username)"),
            "server_password": show(u.serverPassword, "(password)"),
            "pool_size": u.poolSize == 0 ? "(required)" : "\(u.poolSize)", "min_pool_size": "\(u.minPoolSize)",
            "pool_mode": u.poolMode?.rawValue ?? "(the pool's pool_mode)",
            "server_lifetime": show(u.serverLifetime, "(the pool's, then general's)"),
            "statement_timeout": "\(u.statementTimeout)",
            "connect_timeout": show(u.connectTimeout, "(the pool's, then general's)"),
            "idle_timeout": show(u.idleTimeout, "(the pool's, then general's)"),
            "max_client_connections": "\(u.maxClientConnections)",
        ])
    }

    private static var shard: [ConfigDefault] {
        let s = ShardConfig()
        let server = ServerConfig(host: "", port: 0, role: .replica)
        return rows("pools.<name>.shards.<n>", [
            "database": s.database.isEmpty ? "(required)" : s.database,
            "servers": s.servers.isEmpty ? "(required)" : "\(s.servers.count) servers",
            "mirrors": s.mirrors.isEmpty ? "[]" : "\(s.mirrors.count) mirrors",
        ]) + rows("pools.<name>.shards.<n>.servers.<n>", [
            "host": "(required)", "port": "(required)", "role": "(required)",
            "tags": show(server.tags), "weight": "\(server.weight)",
        ])
    }

    private static var mlRouting: [ConfigDefault] {
        let m = MLRoutingConfig()
        let model = MLModelOverride(match: "")
        return rows("pools.<name>.ml_routing", [
            "enabled": "\(m.enabled)", "target_tags": show(m.targetTags), "dedicated": "\(m.dedicated)",
            "inference_pool_size": "\(m.inferencePoolSize)", "affinity": m.affinity.rawValue,
            "affinity_replicas": "\(m.affinityReplicas)", "queue_max": "\(m.queueMax)",
            "queue_timeout": "\(m.queueTimeout)", "statement_timeout": "\(m.statementTimeout)",
            "fallback": m.fallback.rawValue, "models": m.models.isEmpty ? "[]" : "\(m.models.count) models",
        ]) + rows("pools.<name>.ml_routing.models.<n>", [
            "match": "(required)",
            "statement_timeout": show(model.statementTimeout, "(ml_routing.statement_timeout)"),
            "max_connections_per_server": show(model.maxConnectionsPerServer, "(ml_routing.inference_pool_size)"),
            "fallback": model.fallback?.rawValue ?? "(ml_routing.fallback)",
        ])
    }

    private static var plugins: [ConfigDefault] {
        rows("plugins.<plugin>", [
            "enabled": "\(EnabledPlugin().enabled)", "queries": show(PrewarmerPlugin().queries),
            "tables": show(TableAccessPlugin().tables),
        ])
    }
}
