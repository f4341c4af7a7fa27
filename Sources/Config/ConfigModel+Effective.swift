/// Resolved values that fall back from pool to general (auth_query, plugins); see also `EffectiveUserSettings`.

/// The auth_query settings in force for a pool (pool keys override general ones one by one).
public struct AuthQuerySettings: Sendable, Equatable {
    public var query: String
    public var user: String
    public var password: String

    public init(query: String, user: String, password: String) {
        self.query = query
        self.user = user
        self.password = password
    }
}

extension PoolConfig {
    /// nil unless auth_query, auth_query_user and auth_query_password are all set (here or in `general`).
    public func effectiveAuthQuery(general: GeneralConfig) -> AuthQuerySettings? {
        guard let query = authQuery ?? general.authQuery,
              let user = authQueryUser ?? general.authQueryUser,
              let password = authQueryPassword ?? general.authQueryPassword else { return nil }
        return AuthQuerySettings(query: query, user: user, password: password)
    }
}

extension PgCatConfig {
    /// The plugins a pool runs: its own `plugins` block replaces the global one entirely (as in PgCat), and
    /// none run while the pool's query parser is off.
    public func effectivePlugins(for pool: PoolConfig) -> PluginsConfig? {
        guard pool.queryParserEnabled else { return nil }
        return pool.plugins ?? plugins
    }
}
