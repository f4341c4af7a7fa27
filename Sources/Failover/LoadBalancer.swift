/// Choosing the server for a new transaction among a shard's servers: by role, skipping banned ones, by weight at
/// random or by the fewest transactions in flight (`loc`). Pure: the caller passes the servers' state and a
/// random number generator.
public enum LoadBalancer {
    public enum Mode: Equatable, Sendable {
        case random
        /// Least outstanding connections (PgCat's `loc`).
        case leastOutstanding
    }

    public struct Candidate: Equatable, Sendable {
        public var index: Int
        public var isPrimary: Bool
        public var weight: Int
        public var banned: Bool
        /// Connections leased now (transactions in flight).
        public var busy: Int
        /// `role: auto` not determined yet (no health check has answered): it may be the primary.
        public var roleUnknown: Bool

        public init(index: Int, isPrimary: Bool, weight: Int = 1, banned: Bool = false, busy: Int = 0,
                    roleUnknown: Bool = false) {
            self.index = index
            self.isPrimary = isPrimary
            self.weight = weight
            self.banned = banned
            self.busy = busy
            self.roleUnknown = roleUnknown
        }
    }

    public struct Choice: Equatable, Sendable {
        public var index: Int
        /// The role had no healthy server: this one is banned (all were), or the primary stands in for replicas.
        public var degraded: Bool
    }

    /// - Parameter replicaToPrimaryFailover: reads go to the primary while every replica is banned (otherwise
    ///   the banned replicas are tried anyway, as PgCat does).
    public static func pick<R: RandomNumberGenerator>(
        _ candidates: [Candidate], role: TargetRole, mode: Mode, replicaToPrimaryFailover: Bool,
        using random: inout R
    ) -> Choice? {
        let eligible = candidates.filter { candidate in
            switch role {
            case .primary: return candidate.isPrimary
            case .replica: return !candidate.isPrimary
            case .any: return true
            }
        }
        let healthy = eligible.filter { !$0.banned }
        if !healthy.isEmpty {
            return Choice(index: choose(healthy, mode: mode, using: &random), degraded: false)
        }
        if role == .replica, replicaToPrimaryFailover, let primary = candidates.first(where: \.isPrimary) {
            return Choice(index: primary.index, degraded: true)
        }
        if role == .replica, eligible.isEmpty, let primary = candidates.first(where: \.isPrimary) {
            return Choice(index: primary.index, degraded: true)  // a shard without replicas
        }
        if role == .primary, eligible.isEmpty {
            // No known primary (role: auto before its first health check, or during a failover): a server whose
            // role is not known yet may be it; a known replica would refuse the write.
            let unknown = candidates.filter { $0.roleUnknown && !$0.banned }
            if !unknown.isEmpty { return Choice(index: choose(unknown, mode: mode, using: &random), degraded: true) }
        }
        guard !eligible.isEmpty else { return candidates.first.map { Choice(index: $0.index, degraded: true) } }
        return Choice(index: choose(eligible, mode: mode, using: &random), degraded: true)
    }

    private static func choose<R: RandomNumberGenerator>(_ pool: [Candidate], mode: Mode, using random: inout R) -> Int {
        if pool.count == 1 { return pool[0].index }
        var field = pool
        if mode == .leastOutstanding, let least = pool.map(\.busy).min() {
            field = pool.filter { $0.busy == least }
            if field.count == 1 { return field[0].index }
        }
        let total = field.reduce(0) { $0 + max($1.weight, 0) }
        guard total > 0 else { return field[Int.random(in: 0..<field.count, using: &random)].index }
        var ticket = Int.random(in: 0..<total, using: &random)
        for candidate in field {
            ticket -= max(candidate.weight, 0)
            if ticket < 0 { return candidate.index }
        }
        return field[field.count - 1].index
    }
}
