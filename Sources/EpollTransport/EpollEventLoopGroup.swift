/// A fixed set of `EpollEventLoop`s handed out in turn.
#if os(Linux)
import Dispatch
import NIOConcurrencyHelpers
import NIOCore

public final class EpollEventLoopGroup: EventLoopGroup, @unchecked Sendable {
    public let loops: [EpollEventLoop]
    private let turn = NIOLockedValueBox(0)

    public init(numberOfThreads: Int, name: String = "pgcat-loop") throws {
        precondition(numberOfThreads > 0, "at least one loop")
        var started: [EpollEventLoop] = []
        do {
            for index in 0..<numberOfThreads { started.append(try EpollEventLoop(name: "\(name)-\(index)")) }
        } catch {
            for loop in started { loop.shutdownGracefully(queue: .global()) { _ in } }
            throw error
        }
        loops = started
    }

    public func next() -> EventLoop { nextLoop() }

    public func nextLoop() -> EpollEventLoop {
        guard loops.count > 1 else { return loops[0] }
        let index = turn.withLockedValue { value -> Int in
            defer { value = (value + 1) % loops.count }
            return value
        }
        return loops[index]
    }

    /// The calling thread's loop when it is one of the group's, else the next one.
    public func any() -> EventLoop {
        loops.first(where: \.inEventLoop) ?? nextLoop()
    }

    public func makeIterator() -> EventLoopIterator { EventLoopIterator(loops) }

    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        let group = DispatchGroup()
        for loop in loops {
            group.enter()
            loop.shutdownGracefully(queue: queue) { _ in group.leave() }
        }
        group.notify(queue: queue) { callback(nil) }
    }
}
#endif
