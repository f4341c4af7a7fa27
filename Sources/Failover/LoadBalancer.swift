/// Choosing the server for a new transaction among a shard's servers: by role, skipping banned ones, by weight at
/// random or by the fewest transactions in flight (`loc`). Pure: the caller passes the servers' state and a
/// random number generator. Inlinable, so that callers get it specialised for their collection and generator (an
/// unspecialised generic call per transaction cost more than the choice itself).
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

        @inlinable
        public init(index: Int, degraded: Bool) {
            self.index = index
            self.degraded = degraded
        }
    }

    /// - Parameter replicaToPrimaryFailover: reads go to the primary while every replica is banned (otherwise
    ///   the banned replicas are tried anyway, as PgCat does).
    /// Runs for every transaction: no intermediate arrays, at most one random draw.
    @inlinable
    public static func pick<C: Collection, R: RandomNumberGenerator>(
        _ candidates: C, role: TargetRole, mode: Mode, replicaToPrimaryFailover: Bool,
        using random: inout R
    ) -> Choice? where C.Element == Candidate {
        func eligible(_ candidate: Candidate) -> Bool {
            switch role {
            case .primary: return candidate.isPrimary
            case .replica: return !candidate.isPrimary
            case .any: return true
            }
        }
        if let index = choose(candidates, where: { eligible($0) && !$0.banned }, mode: mode, using: &random) {
            return Choice(index: index, degraded: false)
        }
        let anyEligible = candidates.contains(where: eligible)
        if role == .replica, replicaToPrimaryFailover, let primary = candidates.first(where: \.isPrimary) {
            return Choice(index: primary.index, degraded: true)
        }
        if role == .replica, !anyEligible, let primary = candidates.first(where: \.isPrimary) {
            return Choice(index: primary.index, degraded: true)  // a shard without replicas
        }
        if role == .primary, !anyEligible,
           let index = choose(candidates, where: { $0.roleUnknown && !$0.banned }, mode: mode, using: &random) {
            // No known primary (role: auto before its first health check, or during a failover): a server whose
            // role is not known yet may be it; a known replica would refuse the write.
            return Choice(index: index, degraded: true)
        }
        guard anyEligible else { return candidates.first.map { Choice(index: $0.index, degraded: true) } }
        return choose(candidates, where: eligible, mode: mode, using: &random).map { Choice(index: $0, degraded: true) }
    }

    /// Among the candidates `include` admits (in order): the only one, or (`loc`) among those with the fewest in
    /// flight, one at random by weight (uniformly when no weight is positive).
    @inlinable
    static func choose<C: Collection, R: RandomNumberGenerator>(
        _ all: C, where include: (Candidate) -> Bool, mode: Mode, using random: inout R
    ) -> Int? where C.Element == Candidate {
        var count = 0
        var least = Int.max
        var only = -1
        for candidate in all where include(candidate) {
            count += 1
            least = min(least, candidate.busy)
            only = candidate.index
        }
        if count <= 1 { return count == 1 ? only : nil }
        let byLoad = mode == .leastOutstanding
        func inField(_ candidate: Candidate) -> Bool { include(candidate) && (!byLoad || candidate.busy == least) }
        var fieldCount = 0
        var total = 0
        var last = -1
        for candidate in all where inField(candidate) {
            fieldCount += 1
            total += max(candidate.weight, 0)
            last = candidate.index
        }
        if fieldCount == 1 { return last }
        if total <= 0 {
            var skip = Int.random(in: 0..<fieldCount, using: &random)
            for candidate in all where inField(candidate) {
                if skip == 0 { return candidate.index }
                skip -= 1
            }
            return last
        }
        var ticket = Int.random(in: 0..<total, using: &random)
        for candidate in all where inField(candidate) {
            ticket -= max(candidate.weight, 0)
            if ticket < 0 { return candidate.index }
        }
        return last
    }
}
