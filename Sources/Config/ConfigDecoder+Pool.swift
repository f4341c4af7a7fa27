/// Decoding of one `pools.<name>` section and its users.

extension DecodeContext {
    func decodePool(_ r: inout TableReader, name: String) -> PoolConfig {
        var p = PoolConfig()
        r.read("pool_mode", into: &p.poolMode)
        r.read("load_balancing_mode", into: &p.loadBalancingMode)
        r.read("default_role", into: &p.defaultRole)
        let explicitParser = r.get("query_parser_enabled", as: Bool.self)
        r.read("query_parser_max_length", into: &p.queryParserMaxLength)
        r.read("query_parser_read_write_splitting", into: &p.queryParserReadWriteSplitting)
        r.read("primary_reads_enabled", into: &p.primaryReadsEnabled)
        r.read("connect_timeout", into: &p.connectTimeout)
        r.read("idle_timeout", into: &p.idleTimeout)
        r.read("server_lifetime", into: &p.serverLifetime)
        r.read("checkout_failure_limit", into: &p.checkoutFailureLimit)
        r.read("sharding_function", into: &p.shardingFunction)
        r.read("automatic_sharding_key", into: &p.automaticShardingKey)
        r.read("sharding_key_regex", into: &p.shardingKeyRegex)
        r.read("shard_id_regex", into: &p.shardIdRegex)
        r.read("regex_search_limit", into: &p.regexSearchLimit)
        r.read("default_shard", into: &p.defaultShard)
        r.read("auth_query", into: &p.authQuery)
        r.read("auth_query_user", into: &p.authQueryUser)
        r.read("auth_query_password", into: &p.authQueryPassword)
        r.read("cleanup_server_connections", into: &p.cleanupServerConnections)
        r.read("log_client_parameter_status_changes", into: &p.logClientParameterStatusChanges)
        r.read("prepared_statements_cache_size", into: &p.preparedStatementsCacheSize)
        r.read("db_activity_based_routing", into: &p.dbActivityBasedRouting)
        r.read("db_activity_init_delay", into: &p.dbActivityInitDelay)
        r.read("db_activity_ttl", into: &p.dbActivityTtl)
        r.read("table_mutation_cache_ms_ttl", into: &p.tableMutationCacheMsTtl)
        r.read("replica_to_primary_failover", into: &p.replicaToPrimaryFailover)
        r.read("max_replica_lag_bytes", into: &p.maxReplicaLagBytes)
        r.read("read_your_writes_window", into: &p.readYourWritesWindow)
        r.read("fan_out", into: &p.fanOut)
        if var ml = r.table("ml_routing") {
            p.mlRouting = decodeMLRouting(&ml)
            ml.finish()
        }
        if var plugins = r.table("plugins") {
            p.plugins = decodePlugins(&plugins)
            plugins.finish()
        }
        if let users = r.node("users") {
            for (label, node) in indexedItems(users, path: r.path("users"), contiguous: false) {
                let userPath = joinPath(r.path("users"), label)
                guard var userReader = TableReader(node, path: userPath, context: self) else { continue }
                p.users.append(decodeUser(&userReader))
                userReader.finish()
                labels.append(label, to: r.path("users"))
            }
        } else {
            sink.add(r.path("users"), "is required (at least one user)")
        }
        if let shards = r.node("shards") {
            for (label, node) in indexedItems(shards, path: r.path("shards"), contiguous: true) {
                labels.append(label, to: r.path("shards"))
                guard var shardReader = TableReader(node, path: joinPath(r.path("shards"), label), context: self) else {
                    p.shards.append(ShardConfig())
                    continue
                }
                p.shards.append(decodeShard(&shardReader))
                shardReader.finish()
            }
        } else {
            sink.add(r.path("shards"), "is required (at least one shard)")
        }
        applyImplicitQueryParser(&p, explicit: explicitParser, path: r.path("query_parser_enabled"))
        return p
    }

    /// Read/write splitting, automatic sharding and the ML router all need the query parser, so they turn it on.
    private func applyImplicitQueryParser(_ p: inout PoolConfig, explicit: Bool?, path: String) {
        p.queryParserEnabled = explicit ?? false
        var needers: [String] = []
        if p.queryParserReadWriteSplitting { needers.append("query_parser_read_write_splitting") }
        if p.automaticShardingKey != nil { needers.append("automatic_sharding_key") }
        if p.mlRouting?.enabled == true { needers.append("ml_routing.enabled") }
        guard !needers.isEmpty else { return }
        if explicit == false {
            sink.warn(path, "is false, but \(needers.joined(separator: ", ")) needs the query parser; it is turned on")
        }
        p.queryParserEnabled = true
    }

    func decodeUser(_ r: inout TableReader) -> UserConfig {
        var u = UserConfig()
        r.require("username", into: &u.username)
        r.read("password", into: &u.password)
        r.read("auth_type", into: &u.authType)
        r.read("server_username", into: &u.serverUsername)
        r.read("server_password", into: &u.serverPassword)
        r.require("pool_size", into: &u.poolSize)
        r.read("min_pool_size", into: &u.minPoolSize)
        r.read("pool_mode", into: &u.poolMode)
        r.read("server_lifetime", into: &u.serverLifetime)
        r.read("statement_timeout", into: &u.statementTimeout)
        r.read("connect_timeout", into: &u.connectTimeout)
        r.read("idle_timeout", into: &u.idleTimeout)
        r.read("max_client_connections", into: &u.maxClientConnections)
        return u
    }
}
