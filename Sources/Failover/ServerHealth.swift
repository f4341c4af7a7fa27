/// What background probes found about the servers of a shard, and what follows from it: which server is the
/// primary (`role: auto`), how far each replica lags (`max_replica_lag_bytes`), which servers are down. Pure.
public enum ServerHealth {
    /// One probe: `SELECT pg_is_in_recovery(), <current or replayed WAL position>, <a primary's timeline>`.
    public enum Probe: Equatable, Sendable {
        case up(inRecovery: Bool, lsn: UInt64?, timeline: UInt32? = nil)
        case down(reason: String)
    }

    /// A timeline as the first 8 hex digits of a WAL file name (`pg_walfile_name`).
    public static func parseTimeline(_ text: String) -> UInt32? {
        text.count == 8 ? UInt32(text, radix: 16) : nil
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
        /// Not in recovery, yet not the shard's primary: an old primary still (or again) running beside the one
        /// promoted after it. It must get neither writes (two primaries split the data) nor reads (its data is old).
        public var stalePrimary: Bool = false
    }

    /// How a server's role is configured.
    public enum RoleSetting: Sendable { case primary, replica, auto }

    /// - Parameters:
    ///   - maxLagBytes: 0 disables the lag check.
    ///   - roles: each server's configured role (nil: all `auto`).
    ///   - previousPrimary: the server taken as primary until now: it stays so among equals.
    ///   - newestTimeline: the newest primary timeline seen in this shard before: a server on an older one is stale
    ///     even when it is the only one not in recovery (the promoted primary missed a probe).
    public static func verdicts(for probes: [Probe], maxLagBytes: UInt64, roles: [RoleSetting]? = nil,
                                previousPrimary: Int? = nil, newestTimeline: UInt32? = nil) -> [Verdict] {
        let roles = roles ?? Array(repeating: .auto, count: probes.count)
        let primary = electPrimary(probes, roles: roles, previousPrimary: previousPrimary,
                                   newestTimeline: newestTimeline)
        var primaryLSN: UInt64?
        if let primary, case .up(_, let lsn, _) = probes[primary] { primaryLSN = lsn }
        return probes.indices.map { index in
            switch probes[index] {
            case .down:
                return Verdict(up: false, isPrimary: nil, lagBytes: nil, lagging: false)
            case .up(let inRecovery, let lsn, _):
                if !inRecovery, index == primary || roles[index] != .auto {
                    return Verdict(up: true, isPrimary: true, lagBytes: 0, lagging: false)
                }
                if !inRecovery {
                    return Verdict(up: true, isPrimary: false, lagBytes: nil, lagging: false, stalePrimary: true)
                }
                var lag: UInt64?
                if let primaryLSN, let lsn { lag = primaryLSN > lsn ? primaryLSN - lsn : 0 }
                let lagging = maxLagBytes > 0 && (lag.map { $0 > maxLagBytes } ?? (primaryLSN != nil))
                return Verdict(up: true, isPrimary: false, lagBytes: lag, lagging: lagging)
            }
        }
    }

    /// The one server of the shard taken as primary: the configured primary (the operator's word, up or not);
    /// otherwise, among the `auto` servers not in recovery, the one on the newest timeline (a promotion starts a new
    /// timeline, so an old primary that still runs, or runs again, loses), the previous choice among equals, else
    /// the first; never one on a timeline older than the newest seen in the shard. The `auto` servers not in
    /// recovery that are not chosen are stale primaries.
    static func electPrimary(_ probes: [Probe], roles: [RoleSetting], previousPrimary: Int?,
                             newestTimeline: UInt32? = nil) -> Int? {
        if let configured = roles.firstIndex(of: .primary) { return configured }
        func timeline(_ index: Int) -> UInt32 {
            if case .up(_, _, let timeline?) = probes[index] { return timeline }
            return 0
        }
        let candidates = probes.indices.filter { index in
            guard roles[index] == .auto, case .up(false, _, let known) = probes[index] else { return false }
            return known.map { $0 >= (newestTimeline ?? 0) } ?? true  // (older than a primary seen: stale)
        }
        guard candidates.count > 1 else { return candidates.first }
        let newest = candidates.map(timeline).max()!
        let top = candidates.filter { timeline($0) == newest }
        if let previousPrimary, top.contains(previousPrimary) { return previousPrimary }
        return top.first
    }
}
