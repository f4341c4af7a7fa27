/// Upper bounds for durations: far beyond any sensible setting, and small enough that deadlines computed from them
/// (nanoseconds in 64 bits) cannot overflow. Larger values are refused naming the key.
public enum ConfigLimits {
    /// A year, for keys in milliseconds.
    public static let maxMilliseconds = 31_536_000_000
    /// A year, for keys in seconds (`ban_time`, the admin `BAN` command, TCP keepalive times, `dns_max_ttl`).
    public static let maxSeconds = 31_536_000
    /// PostgreSQL's largest `max_connections` (MAX_BACKENDS): no pool can use more.
    public static let maxPoolSize = 262_143
}
