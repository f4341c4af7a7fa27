/// PoolRandom (the load balancer's generator): draws from one shared state never repeat a value across
/// generators, and a weighted choice over it lands on each server about as often as its weight says.
import Atomics
import Failover
import XCTest
@testable import Pooler

final class PoolRandomTests: XCTestCase {
    func testGeneratorsSharingAStateDrawDistinctValues() {
        let state = PoolRandom.makeState()
        var a = PoolRandom(state: state)
        var b = PoolRandom(state: state)
        var seen = Set<UInt64>()
        for _ in 0..<10_000 {
            seen.insert(a.next())
            seen.insert(b.next())
        }
        XCTAssertEqual(seen.count, 20_000, "SplitMix64 over one counter is a bijection of distinct counter values")
    }

    func testWeightedPickFollowsTheWeights() {
        var random = PoolRandom(state: PoolRandom.makeState())
        let candidates = [LoadBalancer.Candidate(index: 0, isPrimary: false, weight: 1),
                          LoadBalancer.Candidate(index: 1, isPrimary: false, weight: 3),
                          LoadBalancer.Candidate(index: 2, isPrimary: true, weight: 5)]
        var counts = [0, 0, 0]
        let draws = 40_000
        for _ in 0..<draws {
            let choice = LoadBalancer.pick(candidates, role: .replica, mode: .random, replicaToPrimaryFailover: false,
                                           using: &random)
            counts[choice!.index] += 1
        }
        XCTAssertEqual(counts[2], 0, "reads never go to the primary while a replica is healthy")
        // 1:3 split of 40,000 draws: 10,000 vs 30,000, far inside ±1,000 (the standard deviation is ~87).
        XCTAssertEqual(Double(counts[0]), Double(draws) / 4, accuracy: 1_000)
        XCTAssertEqual(Double(counts[1]), Double(draws) * 3 / 4, accuracy: 1_000)
    }
}
