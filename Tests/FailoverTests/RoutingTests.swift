import XCTest
@testable import Failover

final class RoutingTests: XCTestCase {
    private struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    func testReadWriteRoles() {
        typealias R = ReadWriteRouting
        XCTAssertEqual(R.role(for: .read, primaryReads: false, fallback: .any), .replica)
        XCTAssertEqual(R.role(for: .read, primaryReads: true, fallback: .any), .any)
        XCTAssertEqual(R.role(for: .write, primaryReads: true, fallback: .replica), .primary)
        XCTAssertEqual(R.role(for: .begin(readOnly: nil), primaryReads: true, fallback: .any), .primary)
        XCTAssertEqual(R.role(for: .begin(readOnly: false), primaryReads: false, fallback: .any), .primary)
        XCTAssertEqual(R.role(for: .begin(readOnly: true), primaryReads: false, fallback: .any), .replica)
        XCTAssertEqual(R.role(for: nil, primaryReads: false, fallback: .replica), .primary, "unparsed: primary")
        XCTAssertEqual(R.role(for: .neutral, primaryReads: false, fallback: .replica), .replica)
        XCTAssertEqual(R.combine(.replica, .primary), .primary)
        XCTAssertEqual(R.combine(.any, .replica), .replica)
        XCTAssertEqual(R.combine(.any, .any), .any)
    }

    private let shard = [
        LoadBalancer.Candidate(index: 0, isPrimary: true),
        LoadBalancer.Candidate(index: 1, isPrimary: false),
        LoadBalancer.Candidate(index: 2, isPrimary: false),
    ]

    private func picks(_ candidates: [LoadBalancer.Candidate], role: TargetRole, mode: LoadBalancer.Mode = .random,
                       failover: Bool = false, n: Int = 3000) -> [Int: Int] {
        var rng = Seeded(state: 7)
        var counts: [Int: Int] = [:]
        for _ in 0..<n {
            guard let choice = LoadBalancer.pick(candidates, role: role, mode: mode, replicaToPrimaryFailover: failover,
                                                 using: &rng) else { continue }
            counts[choice.index, default: 0] += 1
        }
        return counts
    }

    func testRolesFilterAndRandomSpreadsEvenly() {
        XCTAssertEqual(picks(shard, role: .primary), [0: 3000])
        let replicas = picks(shard, role: .replica)
        XCTAssertEqual(Set(replicas.keys), [1, 2])
        XCTAssertEqual(Double(replicas[1]!) / 3000, 0.5, accuracy: 0.05)
        XCTAssertEqual(Set(picks(shard, role: .any).keys), [0, 1, 2])
    }

    func testWeights() {
        var weighted = shard
        weighted[1].weight = 3
        let counts = picks(weighted, role: .replica, n: 4000)
        XCTAssertEqual(Double(counts[1]!) / 4000, 0.75, accuracy: 0.04)
        weighted[2].weight = 0
        XCTAssertEqual(picks(weighted, role: .replica), [1: 3000], "weight 0 takes no traffic while others can")
    }

    func testBannedReplicasAreSkippedThenUsedWhenAllAreBanned() {
        var banned = shard
        banned[1].banned = true
        XCTAssertEqual(picks(banned, role: .replica), [2: 3000])
        banned[2].banned = true
        var rng = Seeded(state: 1)
        let choice = LoadBalancer.pick(banned, role: .replica, mode: .random, replicaToPrimaryFailover: false, using: &rng)
        XCTAssertEqual(choice?.degraded, true)
        XCTAssertNotEqual(choice?.index, 0, "without replica_to_primary_failover the primary is not used for reads")
        let failover = LoadBalancer.pick(banned, role: .replica, mode: .random, replicaToPrimaryFailover: true, using: &rng)
        XCTAssertEqual(failover, LoadBalancer.Choice(index: 0, degraded: true))
    }

    func testLeastOutstandingPrefersTheIdlest() {
        var busy = shard
        busy[1].busy = 5
        busy[2].busy = 1
        XCTAssertEqual(picks(busy, role: .replica, mode: .leastOutstanding), [2: 3000])
        busy[0].busy = 0
        XCTAssertEqual(picks(busy, role: .any, mode: .leastOutstanding), [0: 3000])
    }

    func testShardWithoutReplicasServesReadsFromThePrimary() {
        let lone = [LoadBalancer.Candidate(index: 0, isPrimary: true)]
        var rng = Seeded(state: 3)
        XCTAssertEqual(LoadBalancer.pick(lone, role: .replica, mode: .random, replicaToPrimaryFailover: false, using: &rng)?.index, 0)
    }

    func testWritesWithoutAKnownPrimaryGoToAServerOfUnknownRole() {
        let auto = [
            LoadBalancer.Candidate(index: 0, isPrimary: false, banned: true, roleUnknown: true),  // down
            LoadBalancer.Candidate(index: 1, isPrimary: false),                                   // a known replica
            LoadBalancer.Candidate(index: 2, isPrimary: false, roleUnknown: true),                // not probed yet
        ]
        XCTAssertEqual(picks(auto, role: .primary), [2: 3000])
    }
}
