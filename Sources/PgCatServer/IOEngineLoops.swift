/// The event loops of `io_engine`: the pooler's own epoll loops (Linux), or SwiftNIO's.
///
/// With epoll, NIO still runs the Prometheus exporter (its HTTP server needs NIOPosix): one NIO thread, started
/// only when something asks for it.
import Config
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
#if os(Linux)
import EpollTransport
#endif

enum IOEngineLoops: Sendable {
    case nio(MultiThreadedEventLoopGroup)
    #if os(Linux)
    case epoll(EpollEventLoopGroup, helper: LazyNIOGroup)
    #endif

    init(_ engine: IOEngine, threads: Int, logger: Logger) {
        #if os(Linux)
        if engine == .epoll {
            do {
                self = .epoll(try EpollEventLoopGroup(numberOfThreads: threads), helper: LazyNIOGroup())
                return
            } catch {
                logger.error("io_engine: the epoll loops did not start, using nio", metadata: ["error": "\(error)"])
            }
        }
        #endif
        self = .nio(MultiThreadedEventLoopGroup(numberOfThreads: threads))
    }

    var name: String {
        switch self {
        case .nio: return "nio"
        #if os(Linux)
        case .epoll: return "epoll"
        #endif
        }
    }

    /// The loops for client and server connections, timers and health checks.
    var group: EventLoopGroup {
        switch self {
        case .nio(let group): return group
        #if os(Linux)
        case .epoll(let group, _): return group
        #endif
        }
    }

    /// A NIOPosix group for what needs NIO's bootstraps (the Prometheus exporter).
    var nioGroup: MultiThreadedEventLoopGroup {
        switch self {
        case .nio(let group): return group
        #if os(Linux)
        case .epoll(_, let helper): return helper.group
        #endif
        }
    }

    func shutdown() async {
        switch self {
        case .nio(let group):
            try? await group.shutdownGracefully()
        #if os(Linux)
        case .epoll(let group, let helper):
            try? await group.shutdownGracefully()
            await helper.shutdown()
        #endif
        }
    }
}

/// A one-thread NIOPosix group created on first use.
final class LazyNIOGroup: Sendable {
    private let box = NIOLockedValueBox<MultiThreadedEventLoopGroup?>(nil)

    var group: MultiThreadedEventLoopGroup {
        box.withLockedValue { group in
            if let group { return group }
            let created = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            group = created
            return created
        }
    }

    func shutdown() async {
        let group = box.withLockedValue { $0 }
        try? await group?.shutdownGracefully()
    }
}
