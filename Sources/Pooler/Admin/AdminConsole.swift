/// Carries out admin console commands against the runtime and builds their replies, with PgCat's column names
/// (reference/pgcat.md §1.9) and PgBouncer's column types and state names. Pure apart from the runtime it reads.
import Config
import Foundation
import NIOCore
import PostgresWire

struct AdminConsole {
    let runtime: PoolerRuntime

    /// One command's reply: notices first, then result sets, or an error.
    struct Reply {
        var notices: [String] = []
        var results: [AdminResult] = []
        var error: (state: SQLState, message: String)?
    }

    func execute(_ text: String) -> Reply {
        switch AdminCommand.parse(text) {
        case .failure(let error):
            return Reply(error: (error.unsupported ? .featureNotSupported : .syntaxError, error.message))
        case .success(let command):
            return execute(command)
        }
    }

    func execute(_ command: AdminCommand) -> Reply {
        let now = NIODeadline.now()
        switch command {
        case .show(let what):
            switch what {
            case .help: return Reply(notices: [Self.help], results: [AdminResult([], tag: "SHOW")])
            case .version: return single(showVersion())
            case .config: return single(showConfig())
            case .databases: return single(showDatabases())
            case .pools: return single(showPools(now: now))
            case .clients: return single(showClients(now: now))
            case .servers: return single(showServers(now: now))
            case .users: return single(showUsers())
            case .lists: return single(showLists())
            case .stats: return single(showStats())
            case .bans: return single(showBans())
            case .mlModels: return single(showMLModels())
            case .mlQueues: return single(showMLQueues())
            }
        case .ban(let host, let seconds):
            var result = AdminResult([("db", .text), ("user", .text), ("role", .text), ("host", .text)], tag: "BAN")
            for pool in runtime.pools(database: nil, user: nil) {
                for address in pool.ban(host: host, seconds: seconds, reason: "AdminBan(\(seconds))") {
                    result.append([.text(pool.database), .text(pool.user), .text(address.role), .text(address.host)])
                }
            }
            return single(result)
        case .unban(let host):
            var result = AdminResult([("db", .text), ("user", .text), ("role", .text), ("host", .text)], tag: "UNBAN")
            for pool in runtime.pools(database: nil, user: nil) {
                for address in pool.unban(host: host) {
                    result.append([.text(pool.database), .text(pool.user), .text(address.role), .text(address.host)])
                }
            }
            return single(result)
        case .pause(let selector), .resume(let selector):
            let pausing: Bool
            if case .pause = command { pausing = true } else { pausing = false }
            let pools = runtime.pools(database: selector?.database, user: selector?.user)
            if selector != nil && pools.isEmpty {
                let user = selector!.user.map { ", user: \($0)" } ?? ""
                return Reply(error: (.undefinedObject, "No pool configured for database: \(selector!.database)\(user)"))
            }
            for pool in pools { pausing ? pool.pause() : pool.resume() }
            var tag = pausing ? "PAUSE" : "RESUME"
            if let selector { tag += " " + [selector.database, selector.user].compactMap { $0 }.joined(separator: ",") }
            return single(AdminResult([], tag: tag))
        case .reconnect(let database):
            let pools = runtime.pools(database: database, user: nil)
            if let database, pools.isEmpty { return Reply(error: (.undefinedObject, "No such database: \(database)")) }
            for pool in pools { pool.reconnect() }
            return single(AdminResult([], tag: "RECONNECT"))
        case .kill(let database):
            guard runtime.kill(database: database) else {
                return Reply(error: (.undefinedObject, "No such database: \(database)"))
            }
            return single(AdminResult([], tag: "KILL"))
        case .reload:
            switch runtime.reload() {
            case .success:
                return single(AdminResult([], tag: "RELOAD"))
            case .failure(let error):
                return Reply(error: (.configFileError, "RELOAD failed, the old config stays in force: \(error.message)"))
            }
        case .shutdown:
            var result = AdminResult([("success", .text)], tag: "SHUTDOWN")
            result.append([.text(runtime.requestShutdown() ? "t" : "f")])
            return single(result)
        case .set:
            return single(AdminResult([], tag: "SET"))
        }
    }

    private func single(_ result: AdminResult) -> Reply { Reply(results: [result]) }

    static let help = """
        Console usage
        SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
        SHOW LISTS
        SHOW STATS
        SHOW BANS
        SHOW ML_MODELS|ML_QUEUES
        SET key = arg
        BAN host seconds
        UNBAN host
        RELOAD
        PAUSE [<db>, <user>]
        RESUME [<db>, <user>]
        RECONNECT [<db>]
        KILL <db>
        SHUTDOWN
        """

    // MARK: SHOW

    private func showVersion() -> AdminResult {
        var result = AdminResult([("version", .text)])
        result.append([.text("PgCat \(PgCatVersion.string) (Swift)")])
        return result
    }

    private func showConfig() -> AdminResult {
        let config = runtime.config
        let g = config.general
        var result = AdminResult([("key", .text), ("value", .text), ("default", .text), ("changeable", .text)])
        func row(_ key: String, _ value: String, changeable: Bool = true) {
            result.append([.text(key), .text(value), .text("-"), .text(changeable ? "yes" : "no")])
        }
        row("host", g.host, changeable: false)
        row("port", String(g.port), changeable: false)
        row("prometheus_exporter_port", String(g.prometheusExporterPort), changeable: false)
        row("connect_timeout", String(g.connectTimeout))
        row("idle_timeout", String(g.idleTimeout))
        row("healthcheck_timeout", String(g.healthcheckTimeout))
        row("shutdown_timeout", String(g.shutdownTimeout))
        row("healthcheck_delay", String(g.healthcheckDelay))
        row("ban_time", String(g.banTime))
        row("idle_client_in_transaction_timeout", String(g.idleClientInTransactionTimeout))
        row("query_timeout", String(g.queryTimeout))
        // (the password is not shown; a reload applies all three to the pools that inherit them)
        row("auth_query", g.authQuery ?? "None")
        row("auth_query_user", g.authQueryUser ?? "None")
        for named in config.pools {
            let p = named.config
            let prefix = "pools.\(named.name)"
            row("\(prefix).pool_mode", p.poolMode.rawValue)
            row("\(prefix).load_balancing_mode", p.loadBalancingMode.rawValue)
            row("\(prefix).primary_reads_enabled", String(p.primaryReadsEnabled))
            row("\(prefix).query_parser_enabled", String(p.queryParserEnabled))
            row("\(prefix).query_parser_max_length", p.queryParserMaxLength.map(String.init) ?? "None")
            row("\(prefix).query_parser_read_write_splitting", String(p.queryParserReadWriteSplitting))
            row("\(prefix).default_role", p.defaultRole.rawValue)
            row("\(prefix).sharding_function", p.shardingFunction.rawValue)
            row("pools.\"\(named.name)\".shard_count", String(p.shards.count))
            row("pools.\"\(named.name)\".users", "[" + p.users.map { "\"\($0.username)\"" }.joined(separator: ", ") + "]")
        }
        return result
    }

    private func showDatabases() -> AdminResult {
        var result = AdminResult([
            ("name", .text), ("host", .text), ("port", .int4), ("database", .text), ("force_user", .text),
            ("pool_size", .int4), ("min_pool_size", .int4), ("reserve_pool", .int4), ("pool_mode", .text),
            ("max_connections", .int4), ("current_connections", .int4), ("paused", .int4), ("disabled", .int4),
        ])
        for pool in runtime.pools(database: nil, user: nil) {
            let counts = pool.connectionCounts()
            let paused = pool.isPaused
            for (index, slot) in pool.slots.enumerated() {
                let address = slot.address
                result.append([
                    .text(Self.addressName(pool: pool, slot: slot)), .text(address.host), .int(address.port),
                    .text(address.database), .text(pool.user), .int(pool.maxConnections(of: slot)),
                    .int(slot.isInference ? 0 : pool.settings.minPoolSize), .int(0), .text(pool.settings.poolMode.rawValue),
                    .int(pool.maxConnections(of: slot)), .int(counts[index]), .int(paused ? 1 : 0),
                    .int(pool.isBanned(slotIndex: index) ? 1 : 0),
                ])
            }
        }
        return result
    }

    private func showPools(now: NIODeadline) -> AdminResult {
        var result = AdminResult([
            ("database", .text), ("user", .text), ("pool_mode", .text), ("cl_idle", .int8), ("cl_active", .int8),
            ("cl_waiting", .int8), ("cl_cancel_req", .int8), ("sv_active", .int8), ("sv_idle", .int8),
            ("sv_used", .int8), ("sv_tested", .int8), ("sv_login", .int8), ("maxwait", .int8), ("maxwait_us", .int8),
        ])
        let clients = runtime.clients
        for pool in runtime.pools(database: nil, user: nil) {
            var idle = 0, active = 0, waiting = 0, maxWait = 0
            for client in clients where client.database == pool.database && client.user == pool.user {
                switch client.stats.state {
                case .idle, .login: idle += 1
                case .active: active += 1
                case .waiting:
                    waiting += 1
                    maxWait = max(maxWait, client.stats.currentWait(now: now))
                }
            }
            var serverCounts: [ServerState: Int] = [:]
            for server in pool.serverInfos() { serverCounts[server.state, default: 0] += 1 }
            result.append([
                .text(pool.database), .text(pool.user), .text(pool.settings.poolMode.rawValue),
                .int(idle), .int(active), .int(waiting), .int(pool.cancelsInFlight.load),
                .int(serverCounts[.active, default: 0]), .int(serverCounts[.idle, default: 0]),
                .int(serverCounts[.used, default: 0]), .int(serverCounts[.tested, default: 0]),
                .int(serverCounts[.login, default: 0]), .int(maxWait / 1_000_000), .int(maxWait % 1_000_000),
            ])
        }
        return result
    }

    private func showClients(now: NIODeadline) -> AdminResult {
        var result = AdminResult([
            ("client_id", .text), ("database", .text), ("user", .text), ("application_name", .text),
            ("state", .text), ("transaction_count", .int8), ("query_count", .int8), ("error_count", .int8),
            ("age_seconds", .int8), ("maxwait", .int8), ("maxwait_us", .int8), ("pinned", .text),
            ("addr", .text), ("port", .int4),  // PgBouncer's names: where the client connected from
        ])
        let clients = runtime.clients.sorted { $0.connectedAt < $1.connectedAt }
        for client in clients {
            let wait = client.stats.currentWait(now: now)
            result.append([
                .text(Self.clientID(client.key.processID)), .text(client.database), .text(client.user),
                .text(client.reportedApplicationName.withLockedValue { $0 }), .text(client.stats.state.name),
                .int(client.stats.transactions.load), .int(client.stats.queries.load), .int(client.stats.errors.load),
                .int(Int((now - client.connectedAt).nanoseconds / 1_000_000_000)),
                .int(wait / 1_000_000), .int(wait % 1_000_000),
                .text(client.reportedPin.withLockedValue { $0?.rawValue } ?? ""),
                .text(client.peer.map(Self.hostName) ?? ""), client.peer?.port.map { .int($0) } ?? .null,
            ])
        }
        return result
    }

    private func showServers(now: NIODeadline) -> AdminResult {
        var result = AdminResult([
            ("server_id", .text), ("database_name", .text), ("user", .text), ("address_id", .text),
            ("application_name", .text), ("state", .text), ("transaction_count", .int8), ("query_count", .int8),
            ("bytes_sent", .int8), ("bytes_received", .int8), ("age_seconds", .int8), ("prepare_cache_hit", .int8),
            ("prepare_cache_miss", .int8), ("prepare_cache_eviction", .int8), ("prepare_cache_size", .int8),
        ])
        for pool in runtime.pools(database: nil, user: nil) + runtime.retiredPoolsWithConnections {
            for server in pool.serverInfos() {
                let slot = pool.slots[server.slotIndex]
                result.append([
                    .text(Self.clientID(Int32(truncatingIfNeeded: server.id))), .text(server.address.database),
                    .text(pool.user), .text(Self.addressName(pool: pool, slot: slot)), .text(server.applicationName),
                    .text(server.state.name), .int(server.stats.transactions), .int(server.stats.queries),
                    .int(server.stats.bytesSent), .int(server.stats.bytesReceived),
                    .int(Int((now - server.createdAt).nanoseconds / 1_000_000_000)),
                    .int(server.stats.prepareHits), .int(server.stats.prepareMisses),
                    .int(server.stats.prepareEvictions), .int(server.prepareCacheSize),
                ])
            }
        }
        return result
    }

    private func showUsers() -> AdminResult {
        var result = AdminResult([("name", .text), ("pool_mode", .text)])
        for pool in runtime.pools(database: nil, user: nil) {
            result.append([.text(pool.user), .text(pool.settings.poolMode.rawValue)])
        }
        return result
    }

    private func showLists() -> AdminResult {
        let pools = runtime.pools(database: nil, user: nil)
        let clients = runtime.clients
        var free = 0, used = 0, login = 0
        for client in clients {
            switch client.stats.state {
            case .login: login += 1
            case .idle: free += 1
            case .active, .waiting: used += 1
            }
        }
        var freeServers = 0, usedServers = 0
        for pool in pools {
            for server in pool.serverInfos() {
                if server.state == .idle { freeServers += 1 } else { usedServers += 1 }
            }
        }
        var result = AdminResult([("list", .text), ("items", .int4)])
        let rows: [(String, Int)] = [
            ("databases", Set(pools.map(\.database)).count), ("users", Set(pools.map(\.user)).count),
            ("pools", pools.count), ("free_clients", free), ("used_clients", used), ("login_clients", login),
            ("free_servers", freeServers), ("used_servers", usedServers),
            ("dns_names", 0), ("dns_zones", 0), ("dns_queries", 0), ("dns_pending", 0),
        ]
        for (name, count) in rows { result.append([.text(name), .int(count)]) }
        return result
    }

    private func showStats() -> AdminResult {
        var result = AdminResult([
            ("instance", .text), ("database", .text), ("user", .text), ("total_xact_count", .int8),
            ("total_query_count", .int8), ("total_received", .int8), ("total_sent", .int8), ("total_xact_time", .int8),
            ("total_query_time", .int8), ("total_wait_time", .int8), ("total_errors", .int8),
            ("avg_xact_count", .int8), ("avg_query_count", .int8), ("avg_recv", .int8), ("avg_sent", .int8),
            ("avg_errors", .int8), ("avg_xact_time", .int8), ("avg_query_time", .int8), ("avg_wait_time", .int8),
        ])
        for pool in runtime.pools(database: nil, user: nil) {
            for (index, entry) in pool.addressTotals().enumerated() {
                let t = entry.totals
                let averages = runtime.averages(for: StatsKey(pool: pool, slotIndex: index))
                result.append([
                    .text(Self.addressName(pool: pool, slot: pool.slots[index])), .text(entry.address.database),
                    .text(pool.user), .int(t.transactions), .int(t.queries), .int(t.bytesReceived), .int(t.bytesSent),
                    .int(t.transactionTime), .int(t.queryTime), .int(t.waitTime), .int(t.errors),
                    .int(averages.transactions), .int(averages.queries), .int(averages.bytesReceived),
                    .int(averages.bytesSent), .int(averages.errors), .int(averages.transactionTime),
                    .int(averages.queryTime), .int(averages.waitTime),
                ])
            }
        }
        return result
    }

    private func showBans() -> AdminResult {
        var result = AdminResult([
            ("db", .text), ("user", .text), ("role", .text), ("host", .text), ("reason", .text), ("ban_time", .text),
            ("ban_duration_seconds", .text), ("ban_remaining_seconds", .text), ("port", .int4), ("address_id", .text),
        ])
        let formatter = ISO8601DateFormatter()
        for pool in runtime.pools(database: nil, user: nil) {
            for ban in pool.bans() {
                result.append([
                    .text(pool.database), .text(pool.user), .text(ban.slot.currentRole), .text(ban.slot.address.host),
                    .text(ban.ban.reason), .text(formatter.string(from: ban.ban.since)), .text(String(ban.ban.seconds)),
                    .text(String(ban.remainingSeconds)), .int(ban.slot.address.port),
                    .text(Self.addressName(pool: pool, slot: ban.slot)),
                ])
            }
        }
        return result
    }

    private func showMLModels() -> AdminResult {
        var result = AdminResult([
            ("pool", .text), ("model", .text), ("server", .text), ("in_flight", .int8), ("queued", .int8),
            ("requests", .int8), ("errors", .int8), ("cold_starts", .int8), ("avg_exec_ms", .numeric),
        ])
        for pool in runtime.pools(database: nil, user: nil) where pool.ml != nil {
            let snapshot = pool.mlStats.snapshot()
            for (key, entry) in snapshot.entries.sorted(by: { ($0.key.model, $0.key.server) < ($1.key.model, $1.key.server) }) {
                let finished = max(1, entry.requests - entry.inFlight)
                let average = Double(entry.execMicros) / Double(finished) / 1000
                result.append([
                    .text(pool.name), .text(key.model), .text(key.server), .int(entry.inFlight),
                    .int(snapshot.queued[key.model] ?? 0), .int(entry.requests), .int(entry.errors), .int(entry.coldStarts),
                    .text(String(format: "%.1f", average)),
                ])
            }
        }
        return result
    }

    private func showMLQueues() -> AdminResult {
        var result = AdminResult([
            ("pool", .text), ("server", .text), ("pool_size", .int4), ("active", .int8), ("idle", .int8),
            ("waiting", .int8), ("queue_max", .int4), ("queue_timeout_ms", .int4),
        ])
        for pool in runtime.pools(database: nil, user: nil) {
            guard let ml = pool.ml else { continue }
            for row in pool.inferenceQueues() {
                result.append([
                    .text(pool.name), .text(row.server), .int(ml.inferencePoolSize), .int(row.active), .int(row.idle),
                    .int(row.waiting), .int(ml.queueMax), .int(ml.queueTimeout),
                ])
            }
        }
        return result
    }

    // MARK: names

    /// An address as PgBouncer shows it: the IP address, or the socket path for a Unix socket.
    static func hostName(_ address: SocketAddress) -> String {
        if let ip = address.ipAddress { return ip }
        return address.pathname ?? "\(address)"
    }

    /// PgCat's address name: `{pool}_shard_{n}_primary` or `{pool}_shard_{n}_replica_{i}`.
    static func addressName(pool: ConnectionPool, slot: ConnectionPool.ServerSlot) -> String {
        let address = slot.address
        let suffix = slot.isInference ? "_inference" : ""  // the server's inference pool (ML routing)
        // (`role: auto`: as detected, so the promoted server is the one named primary.)
        if slot.currentRole == "primary" { return "\(pool.database)_shard_\(address.shard)_primary\(suffix)" }
        let replicaNumber = pool.slots.filter {
            $0.address.shard == address.shard && $0.currentRole != "primary" && !$0.isInference
                && $0.address.index < address.index
        }.count
        return "\(pool.database)_shard_\(address.shard)_replica_\(replicaNumber)\(suffix)"
    }

    /// `{:#010X}` as PgCat formats ids: `0x` and eight upper-case hex digits.
    static func clientID(_ id: Int32) -> String {
        let hex = String(UInt32(bitPattern: id), radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }
}
