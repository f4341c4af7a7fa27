/// A listening TCP socket on one `EpollEventLoop`: accepted connections become `EpollSocketChannel`s on the group's
/// loops in turn, set up by `childInitializer` and then made active (as NIO's ServerBootstrap does).
#if os(Linux)
import CEpoll
import Glibc
import NIOCore

public final class EpollListener: EpollSource, @unchecked Sendable {
    public typealias Initializer = @Sendable (Channel) -> EventLoopFuture<Void>

    let descriptor: CInt
    let loop: EpollEventLoop
    let group: EpollEventLoopGroup
    let childInitializer: Initializer
    /// The bound address (the real port when 0 was asked for).
    public let localAddress: SocketAddress?
    /// Every accepted socket's local address, when the listener is bound to one address (not a wildcard): then
    /// accepting needs no getsockname(2) per connection.
    private let acceptedLocalAddress: SocketAddress?
    private var open = true
    private var paused = false

    /// Accepts per readiness before other sockets get their turn.
    static let acceptsPerWakeup = 16
    /// How long accepting pauses when the process or system is out of descriptors (the backlog holds the rest).
    static let descriptorExhaustionPause = TimeAmount.milliseconds(100)

    private init(descriptor: CInt, group: EpollEventLoopGroup, childInitializer: @escaping Initializer) {
        self.descriptor = descriptor
        self.group = group
        self.loop = group.loops[0]
        self.childInitializer = childInitializer
        self.localAddress = EpollSocketChannel.address(of: descriptor, getsockname)
        self.acceptedLocalAddress = localAddress.flatMap { Self.isWildcard($0) ? nil : $0 }
    }

    /// 0.0.0.0 or ::, where each accepted socket's local address is the interface it came in on.
    static func isWildcard(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4): return v4.address.sin_addr.s_addr == INADDR_ANY
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { bytes in bytes.allSatisfy { $0 == 0 } }
        default: return true
        }
    }

    /// Binds `host:port` (resolved here, blocking, like NIO's ServerBootstrap) and starts accepting.
    /// `socketOptions` (level, name, value) are set on the listening socket: Linux copies them to every accepted
    /// socket (TCP_NODELAY, SO_KEEPALIVE and the TCP keepalive settings are), so a connection need not set them.
    /// A failing option is ignored.
    public static func bind(host: String, port: Int, backlog: CInt, group: EpollEventLoopGroup,
                            socketOptions: [(level: CInt, name: CInt, value: CInt)] = [],
                            childInitializer: @escaping Initializer) -> EventLoopFuture<EpollListener> {
        let loop = group.loops[0]
        let descriptor: CInt
        do {
            let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
            descriptor = try listeningSocket(address, backlog: backlog, options: socketOptions)
        } catch {
            return loop.makeFailedFuture(error)
        }
        let listener = EpollListener(descriptor: descriptor, group: group, childInitializer: childInitializer)
        return loop.submit {
            do {
                try loop.register(descriptor, listener, events: EPOLLIN.rawValue)
            } catch {
                Glibc.close(descriptor)
                throw error
            }
            return listener
        }
    }

    /// Stops accepting and closes the socket; open connections are not affected.
    public func close() -> EventLoopFuture<Void> {
        loop.submit { self.closeNow() }
    }

    private func closeNow() {
        guard open else { return }
        open = false
        loop.deregister(descriptor)
        Glibc.close(descriptor)
    }

    func loopClosing() { closeNow() }

    func epollReady(_ events: UInt32) {
        for _ in 0..<Self.acceptsPerWakeup where open && !paused {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let accepted = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    cepoll_accept4(descriptor, $0, &length, CInt(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            guard accepted >= 0 else {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: pauseAccepting()
                default: break  // EAGAIN: nothing more waiting
                }
                return
            }
            let child = group.nextLoop()
            let remote = SocketAddress(storage: storage)
            if child === loop {
                start(accepted, remote: remote, on: child)
            } else {
                child.execute { self.start(accepted, remote: remote, on: child) }
            }
        }
    }

    /// Out of descriptors: level-triggered epoll would report the waiting connection forever, so stop listening for
    /// a moment (NIO's ServerBootstrap backs off the same way).
    private func pauseAccepting() {
        paused = true
        loop.modify(descriptor, events: 0)
        _ = loop.scheduleTask(in: Self.descriptorExhaustionPause) { [self] in
            paused = false
            if open { loop.modify(descriptor, events: EPOLLIN.rawValue) }
        }
    }

    private func start(_ descriptor: CInt, remote: SocketAddress?, on child: EpollEventLoop) {
        _ = EpollSocketChannel(descriptor: descriptor, remote: remote, local: acceptedLocalAddress, loop: child).start(childInitializer)
    }

    private static func listeningSocket(_ address: SocketAddress, backlog: CInt,
                                        options: [(level: CInt, name: CInt, value: CInt)]) throws -> CInt {
        let family = address.protocol.rawValue
        let descriptor = socket(family, CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        for option in options {
            var value = option.value
            _ = setsockopt(descriptor, option.level, option.name, &value, socklen_t(MemoryLayout<CInt>.size))
        }
        let bound = address.withSockAddr { Glibc.bind(descriptor, $0, socklen_t($1)) }
        guard bound == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw IOError(errnoCode: code, reason: "bind(descriptor:ptr:bytes:)")
        }
        guard listen(descriptor, backlog) == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw IOError(errnoCode: code, reason: "listen")
        }
        return descriptor
    }
}
#endif
