/// Which tagged server runs a model's inference (SPEC §1e): rendezvous hashing of the model key over the healthy
/// tagged servers keeps each model on its home server(s), so its backends stay warm, and adding or removing a
/// server moves only that server's models. Load bounds it: a model spills from its home only when the home's load
/// exceeds 1.25 × the average load of the eligible servers plus 1, so a lone client sending one statement at a time
/// never spills. Pure.
public enum ModelPlacement {
    public struct Server: Equatable, Sendable {
        /// Stable identity, e.g. `host:port`.
        public var id: String
        public var weight: Int
        public var healthy: Bool
        /// In-flight plus queued inference statements.
        public var load: Int

        public init(id: String, weight: Int = 1, healthy: Bool = true, load: Int = 0) {
            self.id = id
            self.weight = weight
            self.healthy = healthy
            self.load = load
        }
    }

    public struct Choice: Equatable, Sendable {
        public var index: Int
        /// The server is not among the model's home servers (load spilled it over).
        public var spilled: Bool
    }

    /// Healthy servers in the model's rendezvous order (highest score first).
    public static func ranking(model: String, servers: [Server]) -> [Int] {
        servers.indices.filter { servers[$0].healthy }
            .map { ($0, score(model: model, server: servers[$0].id, weight: servers[$0].weight)) }
            .sorted { $0.1 > $1.1 || ($0.1 == $1.1 && servers[$0.0].id < servers[$1.0].id) }
            .map(\.0)
    }

    /// - Parameters:
    ///   - model: the model key; nil (unknown model) or `affinity == false` places by load alone.
    ///   - homes: how many servers share one model's traffic (`affinity_replicas`).
    public static func place(model: String?, servers: [Server], homes: Int = 1, affinity: Bool = true) -> Choice? {
        let healthy = servers.indices.filter { servers[$0].healthy }
        guard !healthy.isEmpty else { return nil }
        guard let model, affinity else {
            let least = healthy.min { servers[$0].load < servers[$1].load || (servers[$0].load == servers[$1].load && $0 < $1) }!
            return Choice(index: least, spilled: false)
        }
        let order = ranking(model: model, servers: servers)
        let homeSet = order.prefix(max(1, homes))
        let home = homeSet.min { servers[$0].load < servers[$1].load }!
        let average = Double(healthy.reduce(0) { $0 + servers[$1].load }) / Double(healthy.count)
        let bound = 1.25 * average + 1
        if Double(servers[home].load) <= bound { return Choice(index: home, spilled: false) }
        // Spill: the next server in the model's order that is within the bound, else the least loaded.
        if let next = order.dropFirst(homeSet.count).first(where: { Double(servers[$0].load) <= bound }) {
            return Choice(index: next, spilled: true)
        }
        let least = order.min { servers[$0].load < servers[$1].load }!
        return Choice(index: least, spilled: !homeSet.contains(least))
    }

    /// Rendezvous score: weight × −1/ln(u), u = hash(model, server) mapped into (0, 1).
    static func score(model: String, server: String, weight: Int) -> Double {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a, then a SplitMix64 finalizer for spread
        for byte in model.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        hash = (hash ^ 0xFF) &* 0x0000_0100_0000_01B3
        for byte in server.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        hash ^= hash >> 30
        hash = hash &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 27
        hash = hash &* 0x94D0_49BB_1331_11EB
        hash ^= hash >> 31
        let unit = (Double(hash >> 11) + 0.5) / Double(1 << 53)  // in (0, 1)
        return Double(max(weight, 0)) * (-1 / log(unit))
    }
}

/// Shell-style patterns for `ml_routing.models[].match`: `*` any run, `?` one character.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern), t = Array(text)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
