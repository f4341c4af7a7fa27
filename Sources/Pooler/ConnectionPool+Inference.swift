/// Leasing from the inference pools of the servers tagged for ML: the model's home server by rendezvous hashing
/// with bounded load (MLRouter's ModelPlacement), a bounded queue (`queue_max`), and within the server an idle
/// connection that already ran the model (pgml loads models per backend).
import Config
import MLRouter
import NIOCore

extension ConnectionPool {
    enum InferenceLeaseOutcome {
        case leased(ServerConnection, spilled: Bool)
        case waiting(spilled: Bool)
        /// `queue_max` statements already wait.
        case queueFull(depth: Int)
        /// No tagged server is healthy: the caller applies `fallback`.
        case noServer
    }

    /// Statements waiting for an inference connection, over all tagged servers.
    var inferenceQueueDepth: Int {
        lock.withLock { waitingInference }
    }

    /// Under the lock.
    private var waitingInference: Int {
        inferenceSlots.reduce(0) { $0 + $1.machine.waitingCount }
            + modelWaiters.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
    }

    /// A released inference connection goes first to a statement waiting for one of the models it has loaded.
    func takeModelWaiter(for server: ServerConnection, in slot: ServerSlot) -> WaiterRef? {
        lock.withLock {
            guard var byModel = modelWaiters[slot.index], !byModel.isEmpty else { return nil }
            for (model, var waiters) in byModel where !waiters.isEmpty && server.hasLoaded(model) {
                let waiter = waiters.removeFirst()
                byModel[model] = waiters.isEmpty ? nil : waiters
                modelWaiters[slot.index] = byModel.isEmpty ? nil : byModel
                return waiter
            }
            return nil
        }
    }

    /// A waiting statement got its connection (or gave up): it no longer counts as loading its model.
    func inferenceWaitEnded(_ waiter: LeaseWaiter) {
        _ = lock.withLock { coldWaiters.removeValue(forKey: WaiterRef(waiter: waiter)) }
    }

    /// Under the lock: removes a cancelled statement from the model queues.
    func removeModelWaiter(_ ref: WaiterRef) -> Bool {
        coldWaiters[ref] = nil
        for (slotIndex, var byModel) in modelWaiters {
            for (model, var waiters) in byModel {
                guard let index = waiters.firstIndex(of: ref) else { continue }
                waiters.remove(at: index)
                byModel[model] = waiters.isEmpty ? nil : waiters
                modelWaiters[slotIndex] = byModel.isEmpty ? nil : byModel
                return true
            }
        }
        return false
    }

    func leaseInference(for waiter: LeaseWaiter, model: String?) -> InferenceLeaseOutcome {
        guard let ml else { return .noServer }
        let loop = waiter.eventLoop
        let now = NIODeadline.now()
        let outcome: (InferenceLeaseOutcome, ServerSlot?) = lock.withLock {
            let depth = waitingInference
            let servers = inferenceSlots.map { slot in
                ModelPlacement.Server(
                    id: "\(slot.address.host):\(slot.address.port)", weight: slot.weight,
                    healthy: slot.bannedUntil.load(ordering: .relaxed) <= now.uptimeNanoseconds
                        && !slot.lagging.load(ordering: .relaxed),
                    load: slot.machine.leasedCount + slot.machine.waitingCount)
            }
            guard let choice = ModelPlacement.place(model: model, servers: servers, homes: ml.affinityReplicas,
                                                    affinity: ml.affinity == .rendezvous) else { return (.noServer, nil) }
            let slot = inferenceSlots[choice.index]
            // `queue_max` bounds the statements that wait; one that finds an idle connection does not wait.
            if slot.machine.idleCount == 0, depth >= ml.queueMax { return (.queueFull(depth: depth), nil) }
            if paused {
                pausedWaiters.append(WaiterRef(waiter: waiter))
                return (.waiting(spilled: choice.spilled), nil)
            }
            // `max_connections_per_server`: once that many backends here run the model, wait for one of them
            // rather than loading it into another (each copy of a large model costs GPU memory).
            var limited = false
            if let model, let limit = maxConnections(for: model), limit > 0 {
                limited = true
                let warm = slot.live.values.filter { $0.hasLoaded(model) }.count
                let loading = coldWaiters.values.filter { $0.slot == slot.index && $0.model == model }.count
                if warm + loading >= limit {
                    if let idle = slot.machine.takeIdle(where: { $0.hasLoaded(model) }) {
                        return (.leased(idle, spilled: choice.spilled), nil)
                    }
                    modelWaiters[slot.index, default: [:]][model, default: []].append(WaiterRef(waiter: waiter))
                    return (.waiting(spilled: choice.spilled), nil)
                }
            }
            // A warm connection first (it already ran this model), then one on the client's event loop.
            let result = slot.machine.leaseRequested(by: WaiterRef(waiter: waiter),
                                                     prefer: { connection in
                if let model { return connection.hasLoaded(model) }
                return connection.eventLoop === loop
            })
            switch result {
            case .leased(let server):
                // Counted as loading the model from now on (the client marks it when it attaches).
                if limited, let model { server.reserve(model) }
                return (.leased(server, spilled: choice.spilled), nil)
            case .wait(let create):
                if limited, let model { coldWaiters[WaiterRef(waiter: waiter)] = (slot.index, model) }
                return (.waiting(spilled: choice.spilled), create ? slot : nil)
            }
        }
        if let slot = outcome.1 { open(slot, on: loop) }
        return outcome.0
    }

    /// Per tagged server: inference connections leased, idle, and statements waiting.
    func inferenceQueues() -> [(server: String, active: Int, idle: Int, waiting: Int)] {
        lock.withLock {
            inferenceSlots.map { ("\($0.address.host):\($0.address.port)", $0.machine.leasedCount, $0.machine.idleCount,
                                  $0.machine.waitingCount) }
        }
    }

    /// Under the lock: the model's `max_connections_per_server`, if any.
    private func maxConnections(for model: String) -> Int? {
        ml?.models.first { Glob.matches($0.match, model) }?.maxConnectionsPerServer
    }

    /// The per-model override of `ml_routing.models` (first match wins).
    func modelOverride(for model: String?) -> MLModelOverride? {
        guard let ml, let model else { return nil }
        return ml.models.first { Glob.matches($0.match, model) }
    }
}
