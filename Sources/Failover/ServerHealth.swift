/// What background probes found about the servers of a shard, and what follows from it: which server is the
/// primary (`role: auto`), how far each replica lags (`max_replica_lag_bytes`), which servers are down. Pure.
public enum ServerHealth {
    /// One probe: `SELECT pg_is_in_recovery(), <current or replayed WAL position>`.
    public enum Probe: Equatable, Sendable {
        case up(inRecovery: Bool, lsn: UInt64?)
        case down(reason: String)
    }

    /// A WAL position as Postgres prints it (`16/B374D848`).
    public static func parseLSN(_ text: String) -> UInt64? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, parts[0].count <= 8, parts[1].count <= 8,
              let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16) else { return nil }
        return high << 32 | low
    }

    /// What a round of probes means for each server of a shard.
    public struct Verdict: Equatable, Sendable {
        /// The server is reachable.
        public var up: Bool
        /// Whether it is a primary (not in recovery); nil when it could not be asked.
        public var isPrimary: Bool?
        /// Bytes of WAL the replica has not replayed yet, against the shard's primary; nil if unknown.
        public var lagBytes: UInt64?
        /// The replica lags more than allowed: keep it out of rotation.
        public var lagging: Bool
    }

    /// - Parameter maxLagBytes: 0 disables the lag check.
    public static func verdicts(for probes: [Probe], maxLagBytes: UInt64) -> [Verdict] {
        // The primary's position: the newest position among servers not in recovery (normally exactly one).
        let primaryLSN = probes.compactMap { probe -> UInt64? in
            if case .up(false, let lsn?) = probe { return lsn }
            return nil
        }.max()
        return probes.map { probe in
            switch probe {
            case .down:
                return Verdict(up: false, isPrimary: nil, lagBytes: nil, lagging: false)
            case .up(let inRecovery, let lsn):
                guard inRecovery else { return Verdict(up: true, isPrimary: true, lagBytes: 0, lagging: false) }
                var lag: UInt64?
                if let primaryLSN, let lsn { lag = primaryLSN > lsn ? primaryLSN - lsn : 0 }
                let lagging = maxLagBytes > 0 && (lag.map { $0 > maxLagBytes } ?? (primaryLSN != nil))
                return Verdict(up: true, isPrimary: false, lagBytes: lag, lagging: lagging)
            }
        }
    }
}
