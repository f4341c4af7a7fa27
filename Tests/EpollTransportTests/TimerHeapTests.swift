#if os(Linux)
@testable import EpollTransport
import XCTest

/// The timer heap against a plain sorted list: random inserts, cancellations (anywhere in the heap) and pops of
/// what is due. A timer lost or fired out of order here would leave a pgcat client waiting with no timeout.
final class TimerHeapTests: XCTestCase {
    func testRandomInsertsRemovalsAndPopsMatchASortedList() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<50 {
            var heap = TimerHeap()
            var model: [LoopTimer] = []  // kept sorted by (deadline, order)
            var order: UInt64 = 0
            var now: UInt64 = 0
            for _ in 0..<2_000 {
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<5:
                    let timer = LoopTimer(deadline: now + UInt64.random(in: 0..<200, using: &generator),
                                          fire: {}, abandon: { _ in })
                    order += 1
                    timer.order = order
                    heap.insert(timer)
                    let position = model.firstIndex { ($0.deadline, $0.order) > (timer.deadline, timer.order) }
                    model.insert(timer, at: position ?? model.endIndex)
                case 5..<8:
                    guard !model.isEmpty else { continue }
                    let victim = model.remove(at: Int.random(in: 0..<model.count, using: &generator))
                    heap.remove(victim)
                    heap.remove(victim)  // a second cancellation is a no-op
                default:
                    now += UInt64.random(in: 0..<60, using: &generator)
                    while let due = heap.popDue(now: now) {
                        XCTAssertTrue(due === model.first, "round \(round): popped out of order")
                        XCTAssertLessThanOrEqual(due.deadline, now)
                        model.removeFirst()
                    }
                    XCTAssertTrue(model.first.map { $0.deadline > now } ?? true, "round \(round): a due timer was left")
                }
                XCTAssertEqual(heap.count, model.count)
                XCTAssertTrue(heap.first === model.first)
                XCTAssertEqual(heap.firstDeadline, model.first?.deadline)
            }
        }
    }
}
#endif
