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
        lock.withLock { inferenceSlots.reduce(0) { $0 + $1.machine.waitingCount } }
    }

    func leaseInference(for waiter: LeaseWaiter, model: String?) -> InferenceLeaseOutcome {
        guard let ml else { return .noServer }
        let loop = waiter.eventLoop
        let now = NIODeadline.now()
        let outcome: (InferenceLeaseOutcome, ServerSlot?) = lock.withLock {
            let depth = inferenceSlots.reduce(0) { $0 + $1.machine.waitingCount }
            if depth >= ml.queueMax { return (.queueFull(depth: depth), nil) }
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
            if paused {
                pausedWaiters.append(WaiterRef(waiter: waiter))
                return (.waiting(spilled: choice.spilled), nil)
            }
            // A warm connection first (it already ran this model), then one on the client's event loop.
            let result = slot.machine.leaseRequested(by: WaiterRef(waiter: waiter), now: now.uptimeNanoseconds,
                                                     prefer: { connection in
                if let model { return connection.hasLoaded(model) }
                return connection.eventLoop === loop
            })
            switch result {
            case .leased(let server): return (.leased(server, spilled: choice.spilled), nil)
            case .wait(let create): return (.waiting(spilled: choice.spilled), create ? slot : nil)
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

    /// The per-model override of `ml_routing.models` (first match wins).
    func modelOverride(for model: String?) -> MLModelOverride? {
        guard let ml, let model else { return nil }
        return ml.models.first { Glob.matches($0.match, model) }
    }
}
