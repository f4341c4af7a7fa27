/// PoolStateMachine as event scripts: one event and the decision it must produce per line, with `now` given by hand.

import XCTest
@testable import Pooler

final class PoolStateMachineTests: XCTestCase {
    typealias Pool = PoolStateMachine<Int, String>

    func settings(max: Int = 3, min: Int = 0, idleTimeout: UInt64 = 0, lifetime: UInt64 = 0,
                  roundRobin: Bool = true) -> Pool.Settings {
        Pool.Settings(maxSize: max, minSize: min, idleTimeout: idleTimeout, lifetime: lifetime, roundRobin: roundRobin)
    }

    /// A pool holding `connections` idle (opened and returned at `now`, in that order).
    func pool(idle connections: [Int], _ settings: Pool.Settings, now: UInt64 = 0,
              file: StaticString = #filePath, line: UInt = #line) -> Pool {
        var pool = Pool(settings: settings)
        for connection in connections {
            XCTAssertEqual(pool.leaseRequested(by: "setup"), .wait(createConnection: true), file: file, line: line)
            XCTAssertEqual(pool.connectionOpened(connection, now: now), .handOver(connection, to: "setup"), file: file, line: line)
        }
        for connection in connections {
            XCTAssertEqual(pool.connectionReleased(connection, now: now), .keptIdle, file: file, line: line)
        }
        XCTAssertEqual(pool.idleCount, connections.count, file: file, line: line)
        return pool
    }

    func assertCounts(_ pool: Pool, idle: Int, leased: Int, connecting: Int, waiting: Int,
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(pool.idleCount, idle, "idle", file: file, line: line)
        XCTAssertEqual(pool.leasedCount, leased, "leased", file: file, line: line)
        XCTAssertEqual(pool.connecting, connecting, "connecting", file: file, line: line)
        XCTAssertEqual(pool.waitingCount, waiting, "waiting", file: file, line: line)
        XCTAssertEqual(pool.totalCount, idle + leased + connecting, "total", file: file, line: line)
    }

    // MARK: leasing and waiting

    func testReleasePrefersAWaiterWithinTheWindowOnly() {
        var p = pool(idle: [1], settings(max: 1))
        XCTAssertEqual(p.leaseRequested(by: "holder"), .leased(1))
        for name in ["a0", "a1", "b2", "a3", "a4", "a5", "a6", "a7", "b8"] {
            XCTAssertEqual(p.leaseRequested(by: name), .wait(createConnection: false))
        }
        // "b2" is inside the window of the 8 oldest waiters: it may overtake a0 and a1.
        XCTAssertEqual(p.connectionReleased(1, now: 1, prefer: { $0.hasPrefix("b") }), .handOver(1, to: "b2"))
        // "b8" is the 8th waiter now (a0 a1 a3 a4 a5 a6 a7 b8): still inside the window.
        XCTAssertEqual(p.connectionReleased(1, now: 2, prefer: { $0.hasPrefix("b") }), .handOver(1, to: "b8"))
        // No preferred waiter left: the oldest is served.
        XCTAssertEqual(p.connectionReleased(1, now: 3, prefer: { $0.hasPrefix("b") }), .handOver(1, to: "a0"))
        XCTAssertEqual(p.connectionReleased(1, now: 4), .handOver(1, to: "a1"))
        assertCounts(p, idle: 0, leased: 1, connecting: 0, waiting: 5)
    }

    func testPreferenceCannotReachBeyondTheWindow() {
        var p = pool(idle: [1], settings(max: 1))
        XCTAssertEqual(p.leaseRequested(by: "holder"), .leased(1))
        let names = (0..<Pool.preferenceWindow).map { "a\($0)" } + ["b"]
        for name in names { _ = p.leaseRequested(by: name) }
        XCTAssertEqual(p.connectionReleased(1, now: 1, prefer: { $0 == "b" }), .handOver(1, to: "a0"))
        XCTAssertEqual(p.connectionReleased(1, now: 2, prefer: { $0 == "b" }), .handOver(1, to: "b"))
    }

    func testLeaseFromIdle() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionReleased(1, now: 2), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.leaseRequested(by: "b"), .leased(1))
        assertCounts(pool, idle: 0, leased: 1, connecting: 0, waiting: 0)
    }

    func testWaitAndCreateUpToMaxSizeAndNoMore() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: false))
        XCTAssertEqual(pool.leaseRequested(by: "d"), .wait(createConnection: false))
        assertCounts(pool, idle: 0, leased: 0, connecting: 2, waiting: 4)
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionOpened(2, now: 1), .handOver(2, to: "b"))
        XCTAssertEqual(pool.leaseRequested(by: "e"), .wait(createConnection: false))
        assertCounts(pool, idle: 0, leased: 2, connecting: 0, waiting: 3)
    }

    func testCreatesOnlyWhileWaitersOutnumberConnectionsBeingOpened() {
        var pool = Pool(settings: settings(max: 5))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.waiterCancelled("b"), true)
        // One connection is still being opened for nobody: the next waiter takes it instead of a new one.
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: false))
        XCTAssertEqual(pool.connectionOpened(2, now: 1), .handOver(2, to: "c"))
        assertCounts(pool, idle: 0, leased: 2, connecting: 0, waiting: 0)
    }

    func testWaitersAreServedFIFOAsConnectionsOpen() {
        var pool = Pool(settings: settings(max: 3))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(30, now: 1), .handOver(30, to: "a"))
        XCTAssertEqual(pool.connectionOpened(10, now: 1), .handOver(10, to: "b"))
        XCTAssertEqual(pool.connectionOpened(20, now: 1), .handOver(20, to: "c"))
    }

    func testWaitersAreServedFIFOOnRelease() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: false))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: false))
        XCTAssertEqual(pool.connectionReleased(1, now: 3), .handOver(1, to: "b"))
        XCTAssertEqual(pool.connectionReleased(1, now: 4), .handOver(1, to: "c"))
        XCTAssertEqual(pool.connectionReleased(1, now: 5), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    func testFIFOHoldsAcrossQueueCompactionAndCancellations() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "w0"), .wait(createConnection: true))
        for i in 1..<100 {
            XCTAssertEqual(pool.leaseRequested(by: "w\(i)"), .wait(createConnection: false))
        }
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "w0"))
        var cancelled: Set<Int> = []
        for i in 1..<100 {
            if i == 20 { XCTAssertTrue(pool.waiterCancelled("w60")); cancelled.insert(60) }
            if i == 70 { XCTAssertTrue(pool.waiterCancelled("w80")); cancelled.insert(80) }
            if i == 75 { XCTAssertFalse(pool.waiterCancelled("w10")) }  // served long ago
            if cancelled.contains(i) { continue }
            XCTAssertEqual(pool.connectionReleased(1, now: UInt64(i)), .handOver(1, to: "w\(i)"))
        }
        XCTAssertEqual(pool.connectionReleased(1, now: 100), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    // MARK: failures and cancellation

    func testConnectionFailedStrandsWaitersWhenNothingElseExists() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionFailed(), ["a"])
        assertCounts(pool, idle: 0, leased: 0, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
    }

    func testConnectionFailedKeepsWaitersWhileAConnectionIsLeased() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionFailed(), [])
        assertCounts(pool, idle: 0, leased: 1, connecting: 0, waiting: 1)
        XCTAssertEqual(pool.connectionReleased(1, now: 2), .handOver(1, to: "b"))
    }

    func testConnectionFailedKeepsWaitersWhileAnotherIsBeingOpened() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionFailed(), [])
        XCTAssertEqual(pool.connectionFailed(), ["a", "b"])
        assertCounts(pool, idle: 0, leased: 0, connecting: 0, waiting: 0)
    }

    func testConnectionFailedReturnsOnlyWaitersNotYetServed() {
        var pool = Pool(settings: settings(max: 3))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionClosed(1), false)  // two waiters, two connections being opened
        XCTAssertEqual(pool.connectionFailed(), [])
        XCTAssertEqual(pool.connectionFailed(), ["b", "c"])
        assertCounts(pool, idle: 0, leased: 0, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.leaseRequested(by: "d"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(2, now: 3), .handOver(2, to: "d"))
    }

    func testWaiterCancelled() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.waiterCancelled("a"), true)
        XCTAssertEqual(pool.waiterCancelled("a"), false)
        XCTAssertEqual(pool.waiterCancelled("never-waited"), false)
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    func testWaiterCancelledAfterBeingServed() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .handOver(1, to: "a"))
        XCTAssertEqual(pool.waiterCancelled("a"), false)
    }

    func testCancelledWaiterInTheMiddleIsSkipped() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: false))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: false))
        XCTAssertEqual(pool.waiterCancelled("b"), true)
        XCTAssertEqual(pool.connectionOpened(1, now: 1), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionReleased(1, now: 2), .handOver(1, to: "c"))
        XCTAssertEqual(pool.connectionReleased(1, now: 3), .keptIdle)
    }

    // MARK: returning and closing

    func testLifetimeExpiryOnReleaseClosesAndRequestsAReplacementForAWaiter() {
        var pool = Pool(settings: settings(max: 1, lifetime: 100))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: false))
        XCTAssertEqual(pool.connectionReleased(1, now: 100), .close(1, createConnection: true))
        XCTAssertEqual(pool.connectionClosed(1), false)  // the replacement is already being opened
        assertCounts(pool, idle: 0, leased: 0, connecting: 1, waiting: 1)
        XCTAssertEqual(pool.connectionOpened(2, now: 101), .handOver(2, to: "b"))
        XCTAssertEqual(pool.connectionReleased(2, now: 200), .keptIdle)
    }

    func testLifetimeExpiryOnReleaseWithoutWaiters() {
        var pool = Pool(settings: settings(max: 1, lifetime: 100))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 10), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionReleased(1, now: 109), .keptIdle)
        XCTAssertEqual(pool.leaseRequested(by: "b"), .leased(1))
        XCTAssertEqual(pool.connectionReleased(1, now: 110), .close(1, createConnection: false))
        assertCounts(pool, idle: 0, leased: 0, connecting: 0, waiting: 0)
    }

    func testShrinkClosesOnRelease() {
        var pool = Pool(settings: settings(max: 2))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionOpened(2, now: 0), .handOver(2, to: "b"))
        XCTAssertEqual(pool.leaseRequested(by: "c"), .wait(createConnection: false))
        pool.settings.maxSize = 1  // reload
        XCTAssertEqual(pool.connectionReleased(1, now: 2), .close(1, createConnection: false))
        XCTAssertEqual(pool.connectionClosed(1), false)
        XCTAssertEqual(pool.connectionReleased(2, now: 3), .handOver(2, to: "c"))
        XCTAssertEqual(pool.connectionReleased(2, now: 4), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    func testConnectionClosedWhileIdle() {
        var pool = pool(idle: [1, 2], settings())
        XCTAssertEqual(pool.connectionClosed(1), false)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(2))
    }

    func testConnectionClosedWhileLeasedOpensAReplacementForAWaiter() {
        var pool = Pool(settings: settings(max: 1))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: true))
        XCTAssertEqual(pool.connectionOpened(1, now: 0), .handOver(1, to: "a"))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: false))
        XCTAssertEqual(pool.connectionClosed(1), true)
        XCTAssertEqual(pool.connectionOpened(2, now: 2), .handOver(2, to: "b"))
    }

    func testClosingAnUnknownConnectionChangesNothing() {
        var pool = pool(idle: [1], settings())
        XCTAssertEqual(pool.connectionClosed(99), false)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    func testReleasingAConnectionThatIsNotLeasedIsIgnored() {
        var pool = pool(idle: [1], settings())
        XCTAssertEqual(pool.connectionReleased(1, now: 1), .keptIdle)
        XCTAssertEqual(pool.connectionReleased(42, now: 1), .keptIdle)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
    }

    // MARK: sweep

    func testSweepClosesIdlePastTimeoutButKeepsMinSize() {
        var pool = pool(idle: [1, 2, 3], settings(max: 3, min: 1, idleTimeout: 10))
        let early = pool.sweep(now: 9)
        XCTAssertEqual(early.close, [])
        XCTAssertEqual(early.open, 0)
        let due = pool.sweep(now: 10)
        XCTAssertEqual(due.close, [1, 2])
        XCTAssertEqual(due.open, 0)
        assertCounts(pool, idle: 1, leased: 0, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(3))
    }

    func testSweepCountsLeasedConnectionsTowardMinSize() {
        var pool = pool(idle: [1, 2], settings(max: 3, min: 1, idleTimeout: 10))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(1))
        XCTAssertEqual(pool.sweep(now: 10).close, [2])
        assertCounts(pool, idle: 0, leased: 1, connecting: 0, waiting: 0)
    }

    func testReleaseRestartsTheIdleClock() {
        var pool = pool(idle: [1], settings(idleTimeout: 10))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(1))
        XCTAssertEqual(pool.connectionReleased(1, now: 8), .keptIdle)
        XCTAssertEqual(pool.sweep(now: 17).close, [])
        XCTAssertEqual(pool.sweep(now: 18).close, [1])
    }

    func testSweepClosesPastLifetimeEvenAtMinSizeAndReopens() {
        var pool = pool(idle: [1], settings(max: 2, min: 1, lifetime: 100))
        XCTAssertEqual(pool.sweep(now: 99).close, [])
        let due = pool.sweep(now: 100)
        XCTAssertEqual(due.close, [1])
        XCTAssertEqual(due.open, 1)
        assertCounts(pool, idle: 0, leased: 0, connecting: 1, waiting: 0)
        XCTAssertEqual(pool.connectionOpened(2, now: 100), .keptIdle)
        XCTAssertEqual(pool.sweep(now: 199).close, [])
        XCTAssertEqual(pool.sweep(now: 200).close, [2])
    }

    func testSweepOpensUpToMinSizeOnce() {
        var pool = Pool(settings: settings(max: 5, min: 2))
        let first = pool.sweep(now: 0)
        XCTAssertEqual(first.close, [])
        XCTAssertEqual(first.open, 2)
        XCTAssertEqual(pool.sweep(now: 1).open, 0)  // already being opened
        // A waiter that arrives meanwhile takes one of them rather than opening a third.
        XCTAssertEqual(pool.leaseRequested(by: "a"), .wait(createConnection: false))
        XCTAssertEqual(pool.connectionOpened(1, now: 2), .handOver(1, to: "a"))
        XCTAssertEqual(pool.connectionOpened(2, now: 2), .keptIdle)
        assertCounts(pool, idle: 1, leased: 1, connecting: 0, waiting: 0)
    }

    func testSweepWithTimeoutsDisabledKeepsEverything() {
        var pool = pool(idle: [1, 2], settings())
        XCTAssertEqual(pool.sweep(now: .max).close, [])
        XCTAssertEqual(pool.idleCount, 2)
    }

    // MARK: choosing an idle connection

    func testRoundRobinHandsOutTheLongestIdleFirst() {
        var pool = pool(idle: [1, 2, 3], settings(roundRobin: true))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(1))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .leased(2))
        XCTAssertEqual(pool.connectionReleased(1, now: 2), .keptIdle)
        XCTAssertEqual(pool.leaseRequested(by: "c"), .leased(3))
        XCTAssertEqual(pool.leaseRequested(by: "d"), .leased(1))
    }

    func testLIFOHandsOutTheMostRecentlyUsedFirst() {
        var pool = pool(idle: [1, 2, 3], settings(roundRobin: false))
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(3))
        XCTAssertEqual(pool.leaseRequested(by: "b"), .leased(2))
        XCTAssertEqual(pool.connectionReleased(3, now: 2), .keptIdle)
        XCTAssertEqual(pool.leaseRequested(by: "c"), .leased(3))
        XCTAssertEqual(pool.leaseRequested(by: "d"), .leased(1))
    }

    func testPreferPicksAMatchingIdleConnection() {
        var fifo = pool(idle: [1, 2, 3, 4], settings(max: 4, roundRobin: true))
        XCTAssertEqual(fifo.leaseRequested(by: "a", prefer: { $0 % 2 == 0 }), .leased(2))
        XCTAssertEqual(fifo.leaseRequested(by: "b", prefer: { $0 > 10 }), .leased(1))  // none match: usual order
        var lifo = pool(idle: [1, 2, 3, 4], settings(max: 4, roundRobin: false))
        XCTAssertEqual(lifo.leaseRequested(by: "a", prefer: { $0 % 2 == 1 }), .leased(3))
        XCTAssertEqual(lifo.leaseRequested(by: "b", prefer: { $0 > 10 }), .leased(4))
    }

    // MARK: drain

    func testDrainIdleRemovesOnlyIdleConnections() {
        var pool = pool(idle: [1, 2, 3], settings())
        XCTAssertEqual(pool.leaseRequested(by: "a"), .leased(1))
        XCTAssertEqual(pool.drainIdle(), [2, 3])
        assertCounts(pool, idle: 0, leased: 1, connecting: 0, waiting: 0)
        XCTAssertEqual(pool.drainIdle(), [])
        XCTAssertEqual(pool.leaseRequested(by: "b"), .wait(createConnection: true))
    }
}
