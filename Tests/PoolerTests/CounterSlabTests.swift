import NIOCore
import XCTest

@testable import Pooler

/// The counters of one connection share one allocation: each must still be its own counter.
final class CounterSlabTests: XCTestCase {
    func testServerCountersAreIndependentAndSnapshotSumsThem() {
        let stats = ServerStats()
        stats.transactions.add()
        stats.queries.add(3)
        stats.bytesSent.add(100)
        stats.prepareEvictions.add(2)
        stats.stateValue.store(ServerState.active.rawValue)
        XCTAssertEqual(stats.snapshot, ServerStats.Snapshot(transactions: 1, queries: 3, bytesSent: 100,
                                                            prepareEvictions: 2))
        XCTAssertEqual(stats.state, .active)
        XCTAssertEqual(stats.prepareCacheSize.load, 0)

        let totals = ServerStats()
        totals.absorb(stats.snapshot)
        totals.absorb(stats.snapshot)
        XCTAssertEqual(totals.snapshot.queries, 6)
        XCTAssertEqual(totals.state, .login, "absorbing totals leaves the state alone")
    }

    func testClientWaitIsTimedAndCountersStartAtZero() {
        let stats = ClientStats()
        XCTAssertEqual(stats.state, .login)
        XCTAssertEqual(stats.queries.load + stats.transactions.load + stats.errors.load, 0)
        let start = NIODeadline.uptimeNanoseconds(5_000_000_000)
        stats.startWaiting(now: start)
        XCTAssertEqual(stats.state, .waiting)
        XCTAssertEqual(stats.currentWait(now: start + .milliseconds(3)), 3000)
        XCTAssertEqual(stats.stopWaiting(now: start + .milliseconds(7)), 7000)
        XCTAssertEqual(stats.stopWaiting(now: start + .milliseconds(9)), 0, "a wait ends once")
        XCTAssertEqual(stats.currentWait(now: start + .milliseconds(9)), 0)
        stats.queries.add()
        XCTAssertEqual(stats.queries.load, 1)
        XCTAssertEqual(stats.transactions.load, 0)
    }

    func testManyCountersUnderConcurrentAdds() {
        let stats = ServerStats()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<10_000 { stats.queries.add(); stats.transactions.add(2) }
        }
        XCTAssertEqual(stats.queries.load, 80_000)
        XCTAssertEqual(stats.transactions.load, 160_000)
        XCTAssertEqual(stats.errors.load, 0)
    }
}
