#if os(Linux)
import Dispatch
import Glibc
import EpollTransport
import NIOConcurrencyHelpers
import NIOCore
import XCTest

final class EpollEventLoopTests: XCTestCase {
    private var loop: EpollEventLoop!

    override func setUpWithError() throws {
        loop = try EpollEventLoop(name: "test-loop")
    }

    override func tearDown() {
        try? loop.syncShutdownGracefully()
        loop = nil
    }

    func testTasksFromOtherThreadsRunOnTheLoopInTheOrderQueued() throws {
        let seen = NIOLockedValueBox<[Int]>([])
        let offLoop = NIOLockedValueBox(0)
        let done = loop.makePromise(of: Void.self)
        DispatchQueue.global().async { [loop] in
            for i in 0..<2000 {
                loop!.execute {
                    if !loop!.inEventLoop { offLoop.withLockedValue { $0 += 1 } }
                    seen.withLockedValue { $0.append(i) }
                    if i == 1999 { done.succeed() }
                }
            }
        }
        try done.futureResult.wait()
        XCTAssertEqual(seen.withLockedValue { $0 }, Array(0..<2000))
        XCTAssertEqual(offLoop.withLockedValue { $0 }, 0)
        XCTAssertFalse(loop.inEventLoop)
    }

    func testASleepingLoopWakesForATaskAndForAFuture() throws {
        let loop: EpollEventLoop = self.loop  // captured by value: the test case is not Sendable
        usleep(50_000)  // the loop is in epoll_wait without timers now
        let value = try loop.submit { 42 }.wait()
        XCTAssertEqual(value, 42)
        let chained = try loop.makeSucceededFuture(1).flatMap { value in loop.submit { value + 1 } }.wait()
        XCTAssertEqual(chained, 2)
    }

    func testAScheduledTaskRunsNotBeforeItsDeadlineAndGivesItsValue() throws {
        let start = NIODeadline.now()
        let value = try loop.scheduleTask(in: .milliseconds(30)) { NIODeadline.now() }.futureResult.wait()
        XCTAssertGreaterThanOrEqual(value - start, .milliseconds(30))
        XCTAssertLessThan(value - start, .seconds(2))
    }

    func testTimersFireInDeadlineOrderAndEqualDeadlinesInSchedulingOrder() throws {
        let loop: EpollEventLoop = self.loop  // captured by value: the test case is not Sendable
        let order = NIOLockedValueBox<[Int]>([])
        let base = NIODeadline.now() + .milliseconds(20)
        let offsets = [7, 3, 11, 3, 0, 19, 5, 3, 13, 1]
        let futures = try loop.submit {
            offsets.enumerated().map { index, offset in
                loop.scheduleTask(deadline: base + .milliseconds(Int64(offset))) {
                    order.withLockedValue { $0.append(index) }
                }.futureResult
            }
        }.wait()
        for future in futures { try future.wait() }
        let expected = offsets.enumerated().sorted { ($0.element, $0.offset) < ($1.element, $1.offset) }.map(\.offset)
        XCTAssertEqual(order.withLockedValue { $0 }, expected)
    }

    func testACancelledTaskNeverRunsOnOrOffTheLoop() throws {
        let loop: EpollEventLoop = self.loop  // captured by value: the test case is not Sendable
        let ran = NIOLockedValueBox(0)
        let offLoop = loop.scheduleTask(in: .milliseconds(20)) { ran.withLockedValue { $0 += 1 } }
        offLoop.cancel()
        let onLoop = try loop.submit { () -> Scheduled<Void> in
            let task = loop.scheduleTask(in: .milliseconds(20)) { ran.withLockedValue { $0 += 1 } }
            task.cancel()
            return task
        }.wait()
        XCTAssertThrowsError(try offLoop.futureResult.wait())
        XCTAssertThrowsError(try onLoop.futureResult.wait())
        try loop.scheduleTask(in: .milliseconds(60)) {}.futureResult.wait()
        XCTAssertEqual(ran.withLockedValue { $0 }, 0)
    }

    func testManyCancelledTimersLeaveAndTheRestStillFire() throws {
        let loop: EpollEventLoop = self.loop  // captured by value: the test case is not Sendable
        let fired = NIOLockedValueBox(0)
        let kept = try loop.submit { () -> [EventLoopFuture<Void>] in
            var keep: [EventLoopFuture<Void>] = []
            for i in 0..<1000 {
                let task = loop.scheduleTask(in: .milliseconds(Int64(5 + i % 20))) {
                    fired.withLockedValue { $0 += 1 }
                }
                if i % 10 == 0 { keep.append(task.futureResult) } else { task.cancel() }
            }
            return keep
        }.wait()
        for future in kept { try future.wait() }
        try loop.scheduleTask(in: .milliseconds(30)) {}.futureResult.wait()
        XCTAssertEqual(fired.withLockedValue { $0 }, 100)
    }

    func testShutdownFailsTimersThatHaveNotFiredAndCallsBack() throws {
        let outcome = NIOLockedValueBox<Error?>(nil)
        let pending = loop.scheduleTask(in: .seconds(30)) { 1 }
        pending.futureResult.whenFailure { error in outcome.withLockedValue { $0 = error } }  // before: a stopped loop runs nothing
        try loop.syncShutdownGracefully()
        XCTAssertEqual(outcome.withLockedValue { $0 } as? EventLoopError, EventLoopError.shutdown)
        let again = DispatchSemaphore(value: 0)
        loop.shutdownGracefully(queue: .global()) { _ in again.signal() }
        XCTAssertEqual(again.wait(timeout: .now() + 5), .success)
    }

    func testTheGroupHandsOutItsLoopsInTurn() throws {
        let group = try EpollEventLoopGroup(numberOfThreads: 3, name: "test-group")
        defer { try? group.syncShutdownGracefully() }
        let picked = (0..<6).map { _ in ObjectIdentifier(group.next()) }
        XCTAssertEqual(Set(picked).count, 3)
        XCTAssertEqual(Array(picked[0..<3]), Array(picked[3..<6]))
        let loop = group.loops[1]
        XCTAssertTrue(try loop.submit { group.any() === loop }.wait())
    }
}
#endif
