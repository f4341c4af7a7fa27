/// `validate()`: the rules on values that decoding alone cannot check, for `general` and each pool.

import Foundation

extension PgCatConfig {
    /// Every problem with this config's values, each naming its key path. Loading runs this; it is public so a
    /// config built in code can be checked the same way. Key paths use list positions for users.
    public func validate() -> [ConfigProblem] {
        var sink = ProblemSink()
        ConfigValidator(config: self).run(into: &sink)
        return sink.problems
    }
}

/// Database names that belong to the admin console.
let adminDatabaseNames: Set<String> = ["pgcat", "pgbouncer"]

struct ConfigValidator {
    let config: PgCatConfig
    /// How users and shards are named in the file; positions when absent (a config built in code).
    var labels = ItemLabels()

    func run(into sink: inout ProblemSink) {
        validateGeneral(config.general, into: &sink)
        warnNoEffectKeys(config.general, into: &sink)
        if config.pools.isEmpty { sink.add("pools", "must define at least one pool") }
        for pool in config.pools {
            validatePool(pool, into: &sink)
            warnNoEffectKeys(pool, into: &sink)
        }
    }

    // MARK: general

    private func validateGeneral(_ g: GeneralConfig, into sink: inout ProblemSink) {
        if g.host.isEmpty { sink.add("general.host", "must not be empty") }
        checkPort(g.port, "general.port", &sink)
        checkPort(g.prometheusExporterPort, "general.prometheus_exporter_port", &sink)
        let milliseconds: [(String, Int)] = [
            ("connect_timeout", g.connectTimeout), ("idle_timeout", g.idleTimeout),
            ("server_lifetime", g.serverLifetime),
            ("idle_client_in_transaction_timeout", g.idleClientInTransactionTimeout),
            ("query_timeout", g.queryTimeout),
            ("healthcheck_timeout", g.healthcheckTimeout), ("healthcheck_delay", g.healthcheckDelay),
            ("shutdown_timeout", g.shutdownTimeout), ("tcp_user_timeout", g.tcpUserTimeout),
            ("client_login_timeout", g.clientLoginTimeout),
        ]
        for (key, value) in milliseconds { checkMilliseconds(value, "general.\(key)", &sink) }
        let seconds: [(String, Int)] = [
            ("ban_time", g.banTime), ("tcp_keepalives_idle", g.tcpKeepalivesIdle),
            ("tcp_keepalives_interval", g.tcpKeepalivesInterval), ("dns_max_ttl", g.dnsMaxTtl),
        ]
        for (key, value) in seconds { checkSeconds(value, "general.\(key)", &sink) }
        let nonNegative: [(String, Int)] = [
            ("worker_threads", g.workerThreads), ("tcp_keepalives_count", g.tcpKeepalivesCount),
            ("max_client_conn", g.maxClientConn),
        ]
        for (key, value) in nonNegative { checkNonNegative(value, "general.\(key)", &sink) }
        if let autoreload = g.autoreload {
            if autoreload < 1 {
                sink.add("general.autoreload", "must be at least 1 ms (leave it out to turn autoreload off)")
            } else {
                checkMilliseconds(autoreload, "general.autoreload", &sink)
            }
        }
        if g.maxMessageSize < minimumMaxMessageSize {
            sink.add("general.max_message_size", "must be at least \(minimumMaxMessageSize) bytes")
        }
        validateTLS(g, into: &sink)
        if g.adminAuthType != .trust {
            let reason = "is required (unless admin_auth_type is trust)"
            if g.adminUsername.isEmpty { sink.add("general.admin_username", reason) }
            if g.adminPassword.isEmpty { sink.add("general.admin_password", reason) }
        }
        if !g.adminPassword.isEmpty {
            checkPassword(g.adminPassword, authType: g.adminAuthType, path: "general.admin_password", &sink)
        }
        if g.authQuery != nil {
            let reason = "is required when auth_query is set"
            if g.authQueryUser == nil { sink.add("general.auth_query_user", reason) }
            if g.authQueryPassword == nil { sink.add("general.auth_query_password", reason) }
        }
    }

    private func validateTLS(_ g: GeneralConfig, into sink: inout ProblemSink) {
        switch (g.tlsCertificate, g.tlsPrivateKey) {
        case (_?, nil): sink.add("general.tls_private_key", "is required when tls_certificate is set")
        case (nil, _?): sink.add("general.tls_certificate", "is required when tls_private_key is set")
        default: break
        }
        if g.clientTLSMode == .require, g.tlsCertificate == nil || g.tlsPrivateKey == nil {
            sink.add("general.client_tls_mode", "require needs tls_certificate and tls_private_key")
        }
        if g.serverTLSCAFile != nil, !g.verifyServerCertificate {
            sink.warn("general.server_tls_ca_file", "is set but verify_server_certificate is false, so it is not used")
        }
        if g.verifyServerCertificate, !g.serverTLS {
            sink.warn("general.verify_server_certificate",
                      "is true but server_tls is false, so there is nothing to verify")
        }
    }

    // MARK: pools

    private func validatePool(_ named: NamedPool, into sink: inout ProblemSink) {
        let p = named.config
        let path = joinPath("pools", named.name)
        if adminDatabaseNames.contains(named.name) {
            sink.add(path, "'\(named.name)' is the admin console's database name; choose another pool name")
        }
        if p.users.isEmpty { sink.add("\(path).users", "must define at least one user") }
        if p.shards.isEmpty { sink.add("\(path).shards", "must define at least one shard") }
        let optionalMilliseconds: [(String, Int?)] = [
            ("connect_timeout", p.connectTimeout), ("idle_timeout", p.idleTimeout), ("server_lifetime", p.serverLifetime),
        ]
        for case let (key, value?) in optionalMilliseconds { checkMilliseconds(value, "\(path).\(key)", &sink) }
        let optionalNonNegative: [(String, Int?)] = [
            ("checkout_failure_limit", p.checkoutFailureLimit), ("query_parser_max_length", p.queryParserMaxLength),
        ]
        for case let (key, value?) in optionalNonNegative { checkNonNegative(value, "\(path).\(key)", &sink) }
        let milliseconds: [(String, Int)] = [
            ("db_activity_init_delay", p.dbActivityInitDelay), ("table_mutation_cache_ms_ttl", p.tableMutationCacheMsTtl),
            ("read_your_writes_window", p.readYourWritesWindow),
        ]
        for (key, value) in milliseconds { checkMilliseconds(value, "\(path).\(key)", &sink) }
        checkSeconds(p.dbActivityTtl, "\(path).db_activity_ttl", &sink)
        let nonNegative: [(String, Int)] = [
            ("regex_search_limit", p.regexSearchLimit),
            ("prepared_statements_cache_size", p.preparedStatementsCacheSize),
            ("max_replica_lag_bytes", p.maxReplicaLagBytes),
        ]
        for (key, value) in nonNegative { checkNonNegative(value, "\(path).\(key)", &sink) }
        if p.dbActivityBasedRouting, p.dbActivityInitDelay <= 0 {
            sink.add("\(path).db_activity_init_delay", "must be greater than 0 when db_activity_based_routing is on")
        }
        validateSharding(p, path: path, into: &sink)
        validatePoolAuthQuery(p, path: path, into: &sink)
        validatePlugins(p, path: path, into: &sink)
        validateUsers(p, path: path, into: &sink)
        for (i, shard) in p.shards.enumerated() {
            validateShard(shard, path: labels.path(of: i, in: "\(path).shards"), into: &sink)
        }
        if let ml = p.mlRouting { validateMLRouting(ml, pool: p, path: "\(path).ml_routing", into: &sink) }
    }

    private func validateSharding(_ p: PoolConfig, path: String, into sink: inout ProblemSink) {
        switch p.defaultShard {
        case "random", "random_healthy":
            break
        case let value where value.hasPrefix("shard_"):
            if let n = Int(value.dropFirst("shard_".count)), n >= 0 {
                if n >= p.shards.count, !p.shards.isEmpty {
                    sink.add("\(path).default_shard",
                             "shard \(n) does not exist (the pool has \(p.shards.count) shards)")
                }
            } else {
                sink.add("\(path).default_shard", "expected shard_<N>, random or random_healthy, found '\(value)'")
            }
        default:
            sink.add("\(path).default_shard", "expected shard_<N>, random or random_healthy, found '\(p.defaultShard)'")
        }
        for (key, pattern) in [("sharding_key_regex", p.shardingKeyRegex), ("shard_id_regex", p.shardIdRegex)] {
            guard let pattern else { continue }
            do {
                let regex = try NSRegularExpression(pattern: pattern)
                if regex.numberOfCaptureGroups < 1 {
                    sink.add("\(path).\(key)",
                             "needs a capture group around the value, e.g. '/\\* shard_id: (\\d+) \\*/'")
                }
            } catch {
                sink.add("\(path).\(key)", "is not a valid regular expression")
            }
        }
        if let key = p.automaticShardingKey, !isValidShardingKey(key) {
            sink.add("\(path).automatic_sharding_key", "expected table.column (table may be *), found '\(key)'")
        }
    }

    /// `table.column`, each part an identifier (quotes allowed); the table may be `*`.
    private func isValidShardingKey(_ key: String) -> Bool {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"`"))
        }
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, parts[1] != "*" else { return false }
        let identifier = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "_$"))
        let tableOK = parts[0] == "*" || parts[0].unicodeScalars.allSatisfy(identifier.contains)
        return tableOK && parts[1].unicodeScalars.allSatisfy(identifier.contains)
    }

    private func validatePoolAuthQuery(_ p: PoolConfig, path: String, into sink: inout ProblemSink) {
        guard p.authQuery != nil else { return }
        let g = config.general
        if (p.authQueryUser ?? g.authQueryUser) == nil {
            sink.add("\(path).auth_query_user", "is required when auth_query is set (here or in general)")
        }
        if (p.authQueryPassword ?? g.authQueryPassword) == nil {
            sink.add("\(path).auth_query_password", "is required when auth_query is set (here or in general)")
        }
    }

    private func validatePlugins(_ p: PoolConfig, path: String, into sink: inout ProblemSink) {
        if let plugins = p.plugins, plugins.anyEnabled, !p.queryParserEnabled {
            sink.add("\(path).plugins", "plugins need the query parser: set query_parser_enabled: true")
        } else if p.plugins == nil, let global = config.plugins, global.anyEnabled, !p.queryParserEnabled {
            sink.warn(path, "the global plugins do not apply to this pool because its query parser is off")
        }
    }

    // MARK: helpers

    func checkPort(_ port: Int, _ path: String, _ sink: inout ProblemSink) {
        if !(1...65535).contains(port) { sink.add(path, "must be between 1 and 65535, found \(port)") }
    }

    func checkNonNegative(_ value: Int, _ path: String, _ sink: inout ProblemSink) {
        if value < 0 { sink.add(path, "must be 0 or more, found \(value)") }
    }

    /// A duration in milliseconds: 0 or more, at most a year (ConfigLimits).
    func checkMilliseconds(_ value: Int, _ path: String, _ sink: inout ProblemSink) {
        checkDuration(value, path, atMost: ConfigLimits.maxMilliseconds, unit: "ms", &sink)
    }

    /// A duration in seconds: 0 or more, at most a year (ConfigLimits).
    func checkSeconds(_ value: Int, _ path: String, _ sink: inout ProblemSink) {
        checkDuration(value, path, atMost: ConfigLimits.maxSeconds, unit: "seconds", &sink)
    }

    private func checkDuration(_ value: Int, _ path: String, atMost limit: Int, unit: String, _ sink: inout ProblemSink) {
        checkNonNegative(value, path, &sink)
        if value > limit { sink.add(path, "must be at most \(limit) \(unit) (a year), found \(value)") }
    }

    func checkAtLeastOne(_ value: Int, _ path: String, _ sink: inout ProblemSink) {
        if value < 1 { sink.add(path, "must be at least 1") }
    }
}

/// The key of each item of an index-keyed collection (`users`, `shards`) in decoded order, by the collection's path.
struct ItemLabels {
    private var byPath: [String: [String]] = [:]

    mutating func append(_ label: String, to collectionPath: String) {
        byPath[collectionPath, default: []].append(label)
    }

    func label(of index: Int, in collectionPath: String) -> String {
        let labels = byPath[collectionPath] ?? []
        return index < labels.count ? labels[index] : String(index)
    }

    func path(of index: Int, in collectionPath: String) -> String {
        joinPath(collectionPath, label(of: index, in: collectionPath))
    }
}

/// Smallest accepted `max_message_size`; smaller limits would refuse ordinary protocol messages.
let minimumMaxMessageSize = 1024

extension PluginsConfig {
    var anyEnabled: Bool {
        prewarmer?.enabled == true || queryLogger?.enabled == true || tableAccess?.enabled == true
            || intercept?.enabled == true
    }
}
