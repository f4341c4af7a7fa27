/// Decoding of the `plugins` blocks (global and per pool) and of a pool's `ml_routing` block.

extension DecodeContext {
    func decodePlugins(_ r: inout TableReader) -> PluginsConfig {
        var plugins = PluginsConfig()
        if var t = r.table("prewarmer") {
            var prewarmer = PrewarmerPlugin()
            t.read("enabled", into: &prewarmer.enabled)
            t.read("queries", into: &prewarmer.queries)
            t.finish()
            plugins.prewarmer = prewarmer
        }
        if var t = r.table("query_logger") {
            var logger = EnabledPlugin()
            t.read("enabled", into: &logger.enabled)
            t.finish()
            plugins.queryLogger = logger
        }
        if var t = r.table("table_access") {
            var access = TableAccessPlugin()
            t.read("enabled", into: &access.enabled)
            t.read("tables", into: &access.tables)
            t.finish()
            plugins.tableAccess = access
        }
        if var t = r.table("intercept") {
            var intercept = InterceptPlugin()
            t.read("enabled", into: &intercept.enabled)
            if let queries = t.node("queries") {
                for (label, node) in indexedItems(queries, path: t.path("queries"), contiguous: false) {
                    let queryPath = joinPath(t.path("queries"), label)
                    guard var q = TableReader(node, path: queryPath, context: self) else { continue }
                    var query = InterceptQuery(query: "", schema: [], result: [])
                    q.require("query", into: &query.query)
                    q.read("schema", into: &query.schema)
                    q.read("result", into: &query.result)
                    q.finish()
                    intercept.queries.append(query)
                }
            }
            t.finish()
            plugins.intercept = intercept
        }
        return plugins
    }

    func decodeMLRouting(_ r: inout TableReader) -> MLRoutingConfig {
        var ml = MLRoutingConfig()
        r.read("enabled", into: &ml.enabled)
        r.read("target_tags", into: &ml.targetTags)
        r.read("dedicated", into: &ml.dedicated)
        r.read("inference_pool_size", into: &ml.inferencePoolSize)
        r.read("affinity", into: &ml.affinity)
        r.read("affinity_replicas", into: &ml.affinityReplicas)
        r.read("queue_max", into: &ml.queueMax)
        r.read("queue_timeout", into: &ml.queueTimeout)
        r.read("statement_timeout", into: &ml.statementTimeout)
        r.read("fallback", into: &ml.fallback)
        if let models = r.node("models") {
            for (label, node) in indexedItems(models, path: r.path("models"), contiguous: false) {
                let modelPath = joinPath(r.path("models"), label)
                guard var m = TableReader(node, path: modelPath, context: self) else { continue }
                var model = MLModelOverride(match: "")
                m.require("match", into: &model.match)
                m.read("statement_timeout", into: &model.statementTimeout)
                m.read("max_connections_per_server", into: &model.maxConnectionsPerServer)
                m.read("fallback", into: &model.fallback)
                m.finish()
                ml.models.append(model)
            }
        }
        return ml
    }
}
