/// The loop's scheduled tasks: a binary min-heap by deadline (then by scheduling order) in which every timer knows
/// its position, so that a cancelled timer leaves at once instead of waiting for its deadline (pgcat schedules a
/// timeout per query and cancels almost all of them).
final class LoopTimer: @unchecked Sendable {  // loop thread only
    let deadline: UInt64
    /// Scheduling order, set when inserted: equal deadlines run in the order they were scheduled.
    var order: UInt64 = 0
    /// Cancelled (possibly before its insertion ran: then it is never inserted).
    var cancelled = false
    /// Runs the task and completes its promise.
    let fire: () -> Void
    /// Fails its promise (the loop shut down first).
    let abandon: (Error) -> Void
    /// Position in the heap; -1 when not in it.
    fileprivate(set) var index = -1

    init(deadline: UInt64, fire: @escaping () -> Void, abandon: @escaping (Error) -> Void) {
        self.deadline = deadline
        self.fire = fire
        self.abandon = abandon
    }

    fileprivate func precedes(_ other: LoopTimer) -> Bool {
        deadline != other.deadline ? deadline < other.deadline : order < other.order
    }
}

struct TimerHeap {
    private var items: [LoopTimer] = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    /// The timer due first.
    var first: LoopTimer? { items.first }
    /// Its deadline, read without retaining the timer (the loop asks on every turn; a timer's cancellation holds
    /// it weakly, so its reference count lives in a side table and retaining it is slow).
    var firstDeadline: UInt64? { items.isEmpty ? nil : items[0].deadline }

    mutating func insert(_ timer: LoopTimer) {
        precondition(timer.index < 0, "a timer is in the heap once")
        timer.index = items.count
        items.append(timer)
        siftUp(timer.index)
    }

    /// Removes `timer` if it is still in the heap (a no-op once it fired or was removed).
    mutating func remove(_ timer: LoopTimer) {
        let position = timer.index
        guard position >= 0, position < items.count, items[position] === timer else { return }
        let last = items.removeLast()
        timer.index = -1
        guard position < items.count else { return }
        items[position] = last
        last.index = position
        siftDown(position)
        siftUp(last.index)
    }

    /// Removes and returns the first timer if it is due at `now` (nanoseconds of uptime).
    mutating func popDue(now: UInt64) -> LoopTimer? {
        guard let deadline = firstDeadline, deadline <= now else { return nil }
        let top = items[0]
        remove(top)
        return top
    }

    /// Empties the heap, returning what it held.
    mutating func removeAll() -> [LoopTimer] {
        let all = items
        items = []
        for timer in all { timer.index = -1 }
        return all
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { return }
            let right = left + 1
            let smaller = right < items.count && items[right].precedes(items[left]) ? right : left
            guard items[smaller].precedes(items[parent]) else { return }
            swapAt(parent, smaller)
            parent = smaller
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].index = a
        items[b].index = b
    }
}
