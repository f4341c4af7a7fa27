/// How unknown keys are reported: the path shown, "did you mean" suggestions and hints for known PgCat mistakes.

enum UnknownKeys {
    /// Keys PgCat users are known to write that do nothing (or never existed), with what to do instead.
    static let hints: [String: String] = [
        "prepared_statements": "obsolete PgCat key; prepared statements are on while the pool's "
            + "prepared_statements_cache_size is above 0",
        "prepared_statements_cache_size": "this is a pool key: set it under pools.<name>",
        "verify_config": "did you mean 'validate_config'?",
        "db_activity_based_ms_init_delay": "did you mean 'db_activity_init_delay'?",
        "replica_to_primary_failover_enabled": "did you mean 'replica_to_primary_failover'?",
        "pool": "did you mean 'pools'?",
    ]

    static func hint(for key: String, known: [String]) -> String? {
        if let hint = hints[key] { return hint }
        let limit = key.count <= 3 ? 1 : 2
        let best = Set(known)
            .map { ($0, distance(key, $0)) }
            .filter { $0.1 <= limit }
            .min { ($0.1, $0.0) < ($1.1, $1.0) }
        return best.map { "did you mean '\($0.0)'?" }
    }

    /// For an unknown table that holds a single table (a TOML section like `[pool.sharded_db.plugins]`), names the
    /// deepest such table, which is what the user wrote in the file.
    static func displayPath(_ path: String, _ value: ConfigNode) -> String {
        var path = path
        var value = value
        while case .table(let entries) = value, entries.count == 1, case .table = entries[0].value {
            path = joinPath(path, entries[0].key)
            value = entries[0].value
        }
        return path
    }

    /// Edit distance counting an adjacent transposition as one edit (optimal string alignment).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
