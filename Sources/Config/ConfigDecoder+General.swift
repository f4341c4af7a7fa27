/// Decoding of the top level (`general`, `pools`, `plugins`) and of the `general` section.

extension DecodeContext {
    func decodeRoot(_ root: ConfigNode, path filePath: String) -> PgCatConfig {
        var config = PgCatConfig(general: GeneralConfig(), pools: [], path: filePath)
        guard var reader = TableReader(root, path: "", context: self) else { return config }
        if var general = reader.table("general") {
            config.general = decodeGeneral(&general)
            general.finish()
        }
        if var plugins = reader.table("plugins") {
            config.plugins = decodePlugins(&plugins)
            plugins.finish()
        }
        switch reader.node("pools") {
        case nil:
            sink.add("pools", "is required (at least one pool)")
        case .table(let entries)?:
            if entries.isEmpty { sink.add("pools", "must define at least one pool") }
            for entry in entries {
                let poolPath = joinPath("pools", entry.key)
                guard !entry.key.isEmpty else {
                    sink.add(poolPath, "a pool name cannot be empty")
                    continue
                }
                guard var poolReader = TableReader(entry.value, path: poolPath, context: self) else { continue }
                let pool = decodePool(&poolReader, name: entry.key)
                poolReader.finish()
                config.pools.append(NamedPool(name: entry.key, config: pool))
            }
        case let other?:
            sink.add("pools", "expected a table of pools keyed by database name, found \(other.kindDescription)")
        }
        reader.finish()
        return config
    }

    func decodeGeneral(_ r: inout TableReader) -> GeneralConfig {
        var g = GeneralConfig()
        r.read("host", into: &g.host)
        r.read("port", into: &g.port)
        r.read("enable_prometheus_exporter", into: &g.enablePrometheusExporter)
        r.read("prometheus_exporter_port", into: &g.prometheusExporterPort)
        r.read("connect_timeout", into: &g.connectTimeout)
        r.read("idle_timeout", into: &g.idleTimeout)
        r.read("server_lifetime", into: &g.serverLifetime)
        r.read("server_round_robin", into: &g.serverRoundRobin)
        r.read("idle_client_in_transaction_timeout", into: &g.idleClientInTransactionTimeout)
        r.read("query_timeout", into: &g.queryTimeout)
        r.read("healthcheck_timeout", into: &g.healthcheckTimeout)
        r.read("healthcheck_delay", into: &g.healthcheckDelay)
        r.read("shutdown_timeout", into: &g.shutdownTimeout)
        r.read("ban_time", into: &g.banTime)
        r.read("log_client_connections", into: &g.logClientConnections)
        r.read("log_client_disconnections", into: &g.logClientDisconnections)
        g.autoreload = decodeAutoreload(&r)
        r.read("worker_threads", into: &g.workerThreads)
        r.read("io_engine", into: &g.ioEngine)
        r.read("tcp_keepalives_idle", into: &g.tcpKeepalivesIdle)
        r.read("tcp_keepalives_count", into: &g.tcpKeepalivesCount)
        r.read("tcp_keepalives_interval", into: &g.tcpKeepalivesInterval)
        r.read("tcp_user_timeout", into: &g.tcpUserTimeout)
        r.read("tls_certificate", into: &g.tlsCertificate)
        r.read("tls_private_key", into: &g.tlsPrivateKey)
        r.read("client_tls_mode", into: &g.clientTLSMode)
        r.read("server_tls", into: &g.serverTLS)
        r.read("verify_server_certificate", into: &g.verifyServerCertificate)
        r.read("server_tls_ca_file", into: &g.serverTLSCAFile)
        r.read("admin_username", into: &g.adminUsername)
        r.read("admin_password", into: &g.adminPassword)
        r.read("admin_auth_type", into: &g.adminAuthType)
        r.read("validate_config", into: &g.validateConfig)
        r.read("auth_query", into: &g.authQuery)
        r.read("auth_query_user", into: &g.authQueryUser)
        r.read("auth_query_password", into: &g.authQueryPassword)
        r.read("dns_cache_enabled", into: &g.dnsCacheEnabled)
        r.read("dns_max_ttl", into: &g.dnsMaxTtl)
        r.read("max_client_conn", into: &g.maxClientConn)
        r.read("client_login_timeout", into: &g.clientLoginTimeout)
        r.read("max_message_size", into: &g.maxMessageSize)
        return g
    }

    /// `autoreload` is milliseconds; `false` (old PgCat examples) means off.
    private func decodeAutoreload(_ r: inout TableReader) -> Int? {
        switch r.node("autoreload") {
        case nil, .bool(false)?:
            return nil
        case .integer(let ms)?:
            return ms
        case let other?:
            sink.add(r.path("autoreload"),
                     "expected an interval in milliseconds (or false), found \(other.kindDescription)")
            return nil
        }
    }
}
