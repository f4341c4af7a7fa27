/// Background health checks: every `healthcheck_delay` (and at least every 5 s) each server address is asked
/// `pg_is_in_recovery()` and its WAL position, on an idle pooled connection when there is one, otherwise on a probe
/// connection of its own (`application_name` pgcat_probe, at most one per address at a time). What the answers mean
/// (down, primary or replica, lag) is ServerHealth's decision; the pools apply it (bans, `role: auto`, lag).
import Config
import Failover
import NIOConcurrencyHelpers
import NIOCore

extension PoolerRuntime {
    struct AddressKey: Hashable {
        var host: String
        var port: Int
        var database: String
        init(_ address: ServerAddress) {
            host = address.host
            port = address.port
            database = address.database
        }
    }

    /// How often rounds run: `healthcheck_delay`, at most 5 s (role and lag must follow a failover promptly).
    public var healthCheckInterval: TimeAmount {
        .milliseconds(Int64(max(100, min(general.healthcheckDelay, 5000))))
    }

    /// One round of probes; results are applied when every probe of the round has answered or timed out.
    public func checkHealth(on loop: EventLoop) {
        let pools = allPools
        guard !pools.isEmpty else { return }
        let timeout = TimeAmount.milliseconds(Int64(max(general.healthcheckTimeout, 1)))
        var futures: [AddressKey: EventLoopFuture<ServerHealth.Probe>] = [:]
        for pool in pools {
            for slot in pool.slots {
                let key = AddressKey(slot.address)
                guard futures[key] == nil, probesInFlight.withLockedValue({ $0.insert(key).inserted }) else { continue }
                guard let probe = pool.probe(slot, timeout: timeout, on: loop) else {
                    _ = probesInFlight.withLockedValue { $0.remove(key) }
                    continue
                }
                futures[key] = probe.always { _ in
                    _ = self.probesInFlight.withLockedValue { $0.remove(key) }
                }
            }
        }
        guard !futures.isEmpty else { return }
        let keys = Array(futures.keys)
        EventLoopFuture.whenAllComplete(keys.map { futures[$0]! }, on: loop).whenSuccess { outcomes in
            var probes: [AddressKey: ServerHealth.Probe] = [:]
            for (key, outcome) in zip(keys, outcomes) {
                if case .success(let probe) = outcome { probes[key] = probe }
            }
            for pool in pools { pool.apply(probes) }
        }
    }
}

extension ConnectionPool {
    /// Probes one server address; nil when this pool has no idle connection there and cannot log in yet (another
    /// pool probes it, or nobody does until a client logged in).
    func probe(_ slot: ServerSlot, timeout: TimeAmount, on loop: EventLoop) -> EventLoopFuture<ServerHealth.Probe>? {
        let result: EventLoopFuture<[String?]>
        if let server = lock.withLock({ slot.machine.takeIdle() }) {
            // (ServerProbe resets login settings a client left there: they cannot bend the probe.)
            result = ServerProbe.run(ServerProbe.query, on: server, timeout: timeout).always { outcome in
                if case .success = outcome { self.release(server) } else { self.discard(server) }
            }
        } else if waitsForClientLogin {
            return nil
        } else {
            result = openProbeConnection(slot, timeout: timeout, on: loop).flatMap { server in
                ServerProbe.run(ServerProbe.query, on: server, timeout: timeout).always { _ in server.close() }
            }
        }
        return result.map { row -> ServerHealth.Probe in
            guard row.count == 3, let recovery = row[0] else { return .down(reason: "unexpected health check reply") }
            return .up(inRecovery: recovery == "t", lsn: row[1].flatMap(ServerHealth.parseLSN),
                       timeline: row[2].flatMap(ServerHealth.parseTimeline))
        }.recover { error in .down(reason: "\(error)") }
    }

    /// A connection outside the pool's accounting, for probing only.
    private func openProbeConnection(_ slot: ServerSlot, timeout: TimeAmount,
                                     on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        var credentials = self.credentials
        credentials.database = slot.address.database
        credentials.applicationName = "pgcat_probe"
        return openOneOff(slot.address, credentials: credentials, timeout: timeout, on: loop)
    }

    /// Applies a round's probes to this pool's shards.
    func apply(_ probes: [PoolerRuntime.AddressKey: ServerHealth.Probe]) {
        // (A tagged server's inference pool is a second slot of the same server: judged once, applied to both.)
        let servers = slots.filter { !$0.isInference }
        for (_, shardServers) in Dictionary(grouping: servers, by: { $0.address.shard }) {
            let results = shardServers.map { probes[PoolerRuntime.AddressKey($0.address)] }
            guard results.allSatisfy({ $0 != nil }) else { continue }  // probed by another round
            let roles = shardServers.map(\.configuredRole)
            let previous = shardServers.firstIndex { $0.configuredRole == .auto && $0.isPrimary }
            let shard = shardServers[0].address.shard
            let probes = results.map { $0! }
            let newest = lock.withLock { newestPrimaryTimeline[shard] }
            let verdicts = ServerHealth.verdicts(for: probes, maxLagBytes: UInt64(max(0, maxReplicaLagBytes)),
                                                 roles: roles, previousPrimary: previous, newestTimeline: newest)
            lock.withLock {
                for case .up(false, _, let timeline?) in probes where timeline > newestPrimaryTimeline[shard] ?? 0 {
                    newestPrimaryTimeline[shard] = timeline
                }
            }
            for (server, verdict) in zip(shardServers, verdicts) {
                for slot in slots where slot.address == server.address { apply(verdict, to: slot) }
            }
        }
    }

    private func apply(_ verdict: ServerHealth.Verdict, to slot: ServerSlot) {
        let wasStale = slot.stalePrimary.exchange(verdict.stalePrimary, ordering: .relaxed)
        if verdict.stalePrimary {
            // A second server not in recovery, on an older timeline: no writes (the data would split) and no reads
            // (its data is old) while it stays so.
            slot.detectedPrimary.store(0, ordering: .relaxed)
            if !wasStale && !slot.isInference {
                logger.error("a second server is not in recovery: taken as a stale primary and banned", metadata: [
                    "server": "\(slot.address)"])
            }
            ban(slot: slot, reason: "StalePrimary")
            return
        }
        if slot.configuredRole == .auto {
            // An unreachable auto server is no primary until it answers again (and can then be banned).
            let detected = verdict.isPrimary.map { $0 ? 1 : 0 } ?? -1
            let old = slot.detectedPrimary.exchange(detected, ordering: .relaxed)
            if old != detected && !slot.isInference {
                logger.notice("server role detected", metadata: [
                    "server": "\(slot.address)",
                    "role": "\(detected == 1 ? "primary" : detected == 0 ? "replica" : "unknown (down)")"])
            }
        }
        let wasLagging = slot.lagging.exchange(verdict.lagging, ordering: .relaxed)
        if wasLagging != verdict.lagging && !slot.isInference {
            logger.notice(verdict.lagging ? "replica lags: out of rotation" : "replica caught up", metadata: [
                "server": "\(slot.address)", "lag_bytes": "\(verdict.lagBytes.map(String.init) ?? "unknown")"])
        }
        if let lag = verdict.lagBytes { slot.lagBytes.store(Int(clamping: lag)) }
        if !verdict.up { ban(slot: slot, reason: "FailedHealthCheck") }
    }
}
