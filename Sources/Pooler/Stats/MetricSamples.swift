/// PgCat's Prometheus metrics (reference/pgcat.md §1.10) as plain samples, computed from the same counters as the
/// admin console; the exporter in PgCatServer puts them into the Prometheus registry at each scrape.
import NIOCore

public struct MetricSample: Equatable, Sendable {
    public enum Kind: Sendable { case counter, gauge }
    public var name: String
    public var kind: Kind
    public var labels: [(String, String)]
    public var value: Int
    /// The value with its fraction, for series in seconds (exported instead of `value` when set).
    public var exactValue: Double? = nil

    public static func == (a: MetricSample, b: MetricSample) -> Bool {
        a.name == b.name && a.kind == b.kind && a.value == b.value && a.exactValue == b.exactValue
            && a.labels.map { "\($0.0)=\($0.1)" } == b.labels.map { "\($0.0)=\($0.1)" }
    }
}

extension PoolerRuntime {
    public func metricSamples(now: NIODeadline = .now()) -> [MetricSample] {
        var samples: [MetricSample] = []
        func add(_ name: String, _ kind: MetricSample.Kind, _ labels: [(String, String)], _ value: Int) {
            samples.append(MetricSample(name: name, kind: kind, labels: labels, value: value))
        }
        let clients = self.clients
        for pool in pools(database: nil, user: nil) {
            // Per pool (database, user): client and server counts, as SHOW POOLS.
            var clientCounts: [ClientStats.State: Int] = [:]
            var maxWait = 0
            for client in clients where client.database == pool.database && client.user == pool.user {
                let state = client.stats.state
                clientCounts[state, default: 0] += 1
                if state == .waiting { maxWait = max(maxWait, client.stats.currentWait(now: now)) }
            }
            let servers = pool.serverInfos()
            var serverCounts: [ServerState: Int] = [:]
            for server in servers { serverCounts[server.state, default: 0] += 1 }
            let poolLabels = [("pool", pool.database), ("user", pool.user)]
            add("pgcat_pools_cl_idle", .gauge, poolLabels, clientCounts[.idle, default: 0] + clientCounts[.login, default: 0])
            add("pgcat_pools_cl_active", .gauge, poolLabels, clientCounts[.active, default: 0])
            add("pgcat_pools_cl_waiting", .gauge, poolLabels, clientCounts[.waiting, default: 0])
            add("pgcat_pools_cl_cancel_req", .gauge, poolLabels, pool.cancelsInFlight.load)
            add("pgcat_pools_sv_idle", .gauge, poolLabels, serverCounts[.idle, default: 0])
            add("pgcat_pools_sv_active", .gauge, poolLabels, serverCounts[.active, default: 0])
            add("pgcat_pools_sv_used", .gauge, poolLabels, serverCounts[.used, default: 0])
            add("pgcat_pools_sv_login", .gauge, poolLabels, serverCounts[.login, default: 0])
            add("pgcat_pools_sv_tested", .gauge, poolLabels, serverCounts[.tested, default: 0])
            add("pgcat_pools_maxwait", .gauge, poolLabels, maxWait / 1_000_000)
            add("pgcat_pools_maxwait_us", .gauge, poolLabels, maxWait % 1_000_000)

            // Per server address: totals (closed connections included), averages, connection states.
            let counts = pool.connectionCounts()
            let paused = pool.isPaused
            for (index, entry) in pool.addressTotals().enumerated() {
                let address = entry.address
                let t = entry.totals
                let labels = [
                    ("host", address.host), ("shard", String(address.shard)), ("pool", pool.database),
                    ("role", entry.role), ("index", String(address.index)), ("database", address.database),
                    ("username", pool.user),
                ]
                add("pgcat_stats_total_query_count", .counter, labels, t.queries)
                add("pgcat_stats_total_query_time", .counter, labels, t.queryTime)
                add("pgcat_stats_total_received", .counter, labels, t.bytesReceived)
                add("pgcat_stats_total_sent", .counter, labels, t.bytesSent)
                add("pgcat_stats_total_xact_count", .counter, labels, t.transactions)
                add("pgcat_stats_total_xact_time", .counter, labels, t.transactionTime)
                add("pgcat_stats_total_wait_time", .counter, labels, t.waitTime)
                add("pgcat_stats_total_errors", .counter, labels, t.errors)
                let a = averages(for: StatsKey(pool: pool, slotIndex: index))
                add("pgcat_stats_avg_query_count", .gauge, labels, a.queries)
                add("pgcat_stats_avg_query_time", .gauge, labels, a.queryTime)
                add("pgcat_stats_avg_recv", .gauge, labels, a.bytesReceived)
                add("pgcat_stats_avg_sent", .gauge, labels, a.bytesSent)
                add("pgcat_stats_avg_errors", .gauge, labels, a.errors)
                add("pgcat_stats_avg_xact_count", .gauge, labels, a.transactions)
                add("pgcat_stats_avg_xact_time", .gauge, labels, a.transactionTime)
                add("pgcat_stats_avg_wait_time", .gauge, labels, a.waitTime)

                add("pgcat_servers_bytes_received", .counter, labels, t.bytesReceived)
                add("pgcat_servers_bytes_sent", .counter, labels, t.bytesSent)
                add("pgcat_servers_transaction_count", .counter, labels, t.transactions)
                add("pgcat_servers_query_count", .counter, labels, t.queries)
                add("pgcat_servers_error_count", .counter, labels, t.errors)
                var states: [ServerState: Int] = [:]
                for server in servers where server.slotIndex == index { states[server.state, default: 0] += 1 }
                add("pgcat_servers_idle_count", .gauge, labels, states[.idle, default: 0])
                add("pgcat_servers_active_count", .gauge, labels, states[.active, default: 0] + states[.used, default: 0])
                add("pgcat_servers_tested_count", .gauge, labels, states[.tested, default: 0])
                add("pgcat_servers_login_count", .gauge, labels, states[.login, default: 0])
                // States, once per server: the series of a server's inference pool are merged with its own (summed).
                let slot = pool.slots[index]
                if !slot.isInference {
                    add("pgcat_servers_is_banned", .gauge, labels, pool.isBanned(slotIndex: index) ? 1 : 0)
                    add("pgcat_servers_is_paused", .gauge, labels, paused ? 1 : 0)
                    // (ours: a replica kept out of rotation by max_replica_lag_bytes, and its last measured lag)
                    add("pgcat_servers_is_lagging", .gauge, labels, slot.lagging.load(ordering: .relaxed) ? 1 : 0)
                    add("pgcat_servers_replica_lag_bytes", .gauge, labels, slot.lagBytes.load)
                }
                add("pgcat_databases_pool_size", .gauge, labels, pool.maxConnections(of: slot))
                add("pgcat_databases_current_connections", .gauge, labels, counts[index])
            }
        }
        for pool in pools(database: nil, user: nil) where pool.ml != nil {
            let snapshot = pool.mlStats.snapshot()
            let poolLabels = [("pool", pool.database)]
            add("pgcat_ml_queue_depth", .gauge, poolLabels, pool.inferenceQueueDepth)
            add("pgcat_ml_fallback_total", .counter, poolLabels, snapshot.fallbacks)
            add("pgcat_ml_rejected_total", .counter, poolLabels, snapshot.rejected)
            add("pgcat_ml_misplaced_total", .counter, poolLabels + [("reason", "in_txn")], snapshot.misplaced)
            for (key, entry) in snapshot.entries {
                let labels = [("pool", pool.database), ("model", key.model), ("server", key.server)]
                add("pgcat_ml_requests_total", .counter, labels + [("outcome", "ok")], entry.requests - entry.errors)
                add("pgcat_ml_requests_total", .counter, labels + [("outcome", "error")], entry.errors)
                add("pgcat_ml_cold_starts_total", .counter, labels, entry.coldStarts)
                add("pgcat_ml_affinity_hits_total", .counter, labels, entry.affinityHits)
                add("pgcat_ml_in_flight", .gauge, labels, entry.inFlight)
                let seconds = Double(entry.execMicros) / 1_000_000
                samples.append(MetricSample(name: "pgcat_ml_exec_time_seconds_total", kind: .counter, labels: labels,
                                            value: Int(seconds), exactValue: seconds))
            }
        }
        return Self.mergingDuplicates(samples)
    }

    /// Series with the same name and labels added up: the `pgcat_ml_*` series are labelled by pool, and a pool
    /// with several users has a set of inference pools per user (an exporter would otherwise keep only one).
    static func mergingDuplicates(_ samples: [MetricSample]) -> [MetricSample] {
        var index: [String: Int] = [:]
        var merged: [MetricSample] = []
        merged.reserveCapacity(samples.count)
        for sample in samples {
            let key = sample.name + "{" + sample.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
            if let at = index[key] {
                merged[at].value += sample.value
                if merged[at].exactValue != nil || sample.exactValue != nil {
                    merged[at].exactValue = (merged[at].exactValue ?? Double(merged[at].value - sample.value))
                        + (sample.exactValue ?? Double(sample.value))
                }
            } else {
                index[key] = merged.count
                merged.append(sample)
            }
        }
        return merged
    }
}
