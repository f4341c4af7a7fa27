/// Warnings for PgCat keys that load and validate but do nothing in this pooler.

// A migrated PgCat config keeps loading, but its author must not believe a behaviour is on when it is not.
// A key left out or at its default is silent: PgCat's own example file sets several of them to their defaults.

extension ConfigValidator {
    static let noEffect = "is accepted for PgCat compatibility but has no effect in this pooler"

    func warnNoEffectKeys(_ g: GeneralConfig, into sink: inout ProblemSink) {
        let d = GeneralConfig()
        let dns = "server host names are looked up on every new connection"
        let keys: [(key: String, set: Bool, note: String?)] = [
            // PgCat with `false` skips connecting to the servers before it starts or reloads; here neither ever
            // waits for a server (health checks probe them in the background either way).
            ("validate_config", g.validateConfig != d.validateConfig,
             "start-up and reload never wait for the servers, whatever this says"),
            ("dns_cache_enabled", g.dnsCacheEnabled != d.dnsCacheEnabled, dns),
            ("dns_max_ttl", g.dnsMaxTtl != d.dnsMaxTtl, dns),
        ]
        for key in keys where key.set { warn("general.\(key.key)", note: key.note, into: &sink) }
    }

    func warnNoEffectKeys(_ named: NamedPool, into sink: inout ProblemSink) {
        let p = named.config, d = PoolConfig()
        let activity = "for reads that must see recent writes, see read_your_writes_window"
        let keys: [(key: String, set: Bool, note: String?)] = [
            // 0 means no limit in PgCat too, so only a positive limit is one this pooler fails to enforce.
            ("checkout_failure_limit", (p.checkoutFailureLimit ?? 0) > 0, nil),
            ("log_client_parameter_status_changes",
             p.logClientParameterStatusChanges != d.logClientParameterStatusChanges, nil),
            ("db_activity_based_routing", p.dbActivityBasedRouting != d.dbActivityBasedRouting, activity),
            ("db_activity_init_delay", p.dbActivityInitDelay != d.dbActivityInitDelay, activity),
            ("db_activity_ttl", p.dbActivityTtl != d.dbActivityTtl, activity),
            ("table_mutation_cache_ms_ttl", p.tableMutationCacheMsTtl != d.tableMutationCacheMsTtl, activity),
        ]
        let path = joinPath("pools", named.name)
        for key in keys where key.set { warn("\(path).\(key.key)", note: key.note, into: &sink) }
    }

    private func warn(_ keyPath: String, note: String?, into sink: inout ProblemSink) {
        sink.warn(keyPath, Self.noEffect + (note.map { " (\($0))" } ?? ""))
    }
}
