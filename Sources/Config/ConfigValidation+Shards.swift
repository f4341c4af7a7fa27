/// `validate()` rules for shards (servers, roles, duplicates, mirrors) and the `ml_routing` block.

extension ConfigValidator {
    func validateShard(_ shard: ShardConfig, path: String, into sink: inout ProblemSink) {
        if shard.database.isEmpty { sink.add("\(path).database", "is required") }
        if shard.servers.isEmpty { sink.add("\(path).servers", "must list at least one server") }
        var primaryIndex: Int?
        var firstByAddress: [String: Int] = [:]
        for (i, server) in shard.servers.enumerated() {
            let serverPath = "\(path).servers.\(i)"
            if server.host.isEmpty { sink.add("\(serverPath).host", "is required") }
            checkPort(server.port, "\(serverPath).port", &sink)
            checkAtLeastOne(server.weight, "\(serverPath).weight", &sink)
            if server.tags.contains(where: \.isEmpty) {
                sink.add("\(serverPath).tags", "tags must not be empty strings")
            }
            if server.role == .primary {
                if let first = primaryIndex {
                    sink.add(serverPath, "a shard has at most one primary (servers.\(first) is already primary)")
                } else {
                    primaryIndex = i
                }
            }
            guard !server.host.isEmpty, server.port != 0 else { continue }
            let address = "\(server.host.lowercased()):\(server.port)"
            if let first = firstByAddress[address] {
                sink.add(serverPath, "duplicate server \(server.host):\(server.port) (same as servers.\(first))")
            } else {
                firstByAddress[address] = i
            }
        }
        for (i, mirror) in shard.mirrors.enumerated() {
            let mirrorPath = "\(path).mirrors.\(i)"
            if mirror.host.isEmpty { sink.add("\(mirrorPath).host", "is required") }
            checkPort(mirror.port, "\(mirrorPath).port", &sink)
            if !shard.servers.indices.contains(mirror.mirroringTargetIndex) {
                sink.add("\(mirrorPath).mirroring_target_index",
                         "must name one of this shard's servers (0..\(max(shard.servers.count - 1, 0)))")
            }
        }
    }

    func validateMLRouting(_ ml: MLRoutingConfig, pool: PoolConfig, path: String, into sink: inout ProblemSink) {
        if ml.enabled, ml.targetTags.isEmpty {
            sink.add("\(path).target_tags", "must name at least one server tag when ml_routing is enabled")
        }
        if ml.targetTags.contains(where: \.isEmpty) {
            sink.add("\(path).target_tags", "tags must not be empty strings")
        }
        checkAtLeastOne(ml.inferencePoolSize, "\(path).inference_pool_size", &sink)
        checkAtLeastOne(ml.affinityReplicas, "\(path).affinity_replicas", &sink)
        checkNonNegative(ml.queueMax, "\(path).queue_max", &sink)
        checkMilliseconds(ml.queueTimeout, "\(path).queue_timeout", &sink)
        checkMilliseconds(ml.statementTimeout, "\(path).statement_timeout", &sink)
        for (i, model) in ml.models.enumerated() {
            let modelPath = "\(path).models.\(i)"
            if model.match.isEmpty { sink.add("\(modelPath).match", "is required (a glob on the model key)") }
            if let timeout = model.statementTimeout {
                checkMilliseconds(timeout, "\(modelPath).statement_timeout", &sink)
            }
            if let max = model.maxConnectionsPerServer {
                checkAtLeastOne(max, "\(modelPath).max_connections_per_server", &sink)
            }
        }
        if ml.enabled, !ml.targetTags.isEmpty {
            let tagged = pool.shards.flatMap(\.servers).contains { !Set($0.tags).isDisjoint(with: ml.targetTags) }
            if !tagged {
                sink.warn("\(path).target_tags", "no server in this pool carries any of these tags, so inference "
                    + "always takes the fallback (\(ml.fallback.rawValue))")
            }
        }
    }
}
