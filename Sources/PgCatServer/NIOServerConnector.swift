/// Opens TCP connections to PostgreSQL servers on the connection's event loop: through `EpollConnector` on the
/// pooler's own loops, through NIOPosix's ClientBootstrap on NIO's (every resolved address is tried in turn).
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Pooler
import PostgresWire
#if os(Linux)
import EpollTransport
#endif

struct NIOServerConnector: ServerConnector {
    let keepalive: TCPKeepalive
    let threadPool: NIOThreadPool
    /// `server_tls` in force (swapped on reload; connections already open keep theirs).
    let serverTLS = NIOLockedValueBox<ServerTLSPolicy?>(nil)

    func runBlocking(on eventLoop: EventLoop, _ work: @escaping @Sendable () -> Void) -> EventLoopFuture<Void> {
        threadPool.runIfActive(eventLoop: eventLoop, work)
    }

    /// PostgreSQL's socket file for a server whose host is a directory (`/var/run/postgresql`), as libpq names it.
    static func unixSocketPath(_ host: String, _ port: Int) -> String {
        (host.hasSuffix("/") ? String(host.dropLast()) : host) + "/.s.PGSQL.\(port)"
    }

    func connect(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                 handler: ServerConnection) -> EventLoopFuture<Void> {
        // PostgreSQL does not speak TLS over its Unix-domain socket (libpq ignores sslmode there too).
        let policy = host.hasPrefix("/") ? nil : serverTLS.withLockedValue { $0 }
        let negotiator = policy.map {
            ServerTLSNegotiator(policy: $0, host: host, handler: handler, done: eventLoop.makePromise())
        }
        let keepalive = self.keepalive
        let connected = open(host: host, port: port, on: eventLoop, timeout: timeout) { channel in
            keepalive.apply(to: channel).flatMapThrowing {
                try channel.pipeline.syncOperations.addHandler((negotiator as ChannelHandler?) ?? handler)
            }
        }
        guard let negotiator else { return connected.map { _ in } }
        return connected.flatMap { channel in
            negotiator.arm(timeout: timeout, on: channel)
            return negotiator.future
        }
    }

    func startDirectIO(of channel: Channel, readsTo receiver: DirectReadReceiver) -> CInt? {
        guard let descriptor = ChannelDescriptor.plaintextTCP(channel) else { return nil }
        #if os(Linux)
        if let socket = channel as? EpollSocketChannel { socket.deliverReads(to: ReadForwarder(receiver)) }
        #endif
        return descriptor
    }

    var shutsDownOutput: Bool { true }

    func shutdownOutput(of channel: Channel) -> Bool {
        guard let descriptor = ChannelDescriptor.plaintextTCP(channel) else { return false }
        return shutdown(descriptor, CInt(SHUT_WR)) == 0
    }

    @discardableResult
    func sendCancel(host: String, port: Int, key: BackendKeyData, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        open(host: host, port: port, on: eventLoop, timeout: .seconds(5)) { $0.eventLoop.makeSucceededVoidFuture() }
            .flatMap { channel in
                var buffer = channel.allocator.buffer(capacity: 16)
                MessageEncoder.cancelRequest(key, into: &buffer)
                // Postgres closes the connection once it has handled the request; do not wait forever.
                let deadline = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
                return channel.writeAndFlush(buffer).flatMap { channel.closeFuture }.always { _ in deadline.cancel() }
            }
    }

    /// A connected channel to `host:port` on `eventLoop`, set up by `initializer` before it becomes active.
    private func open(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                      initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Channel> {
        #if os(Linux)
        if let loop = eventLoop as? EpollEventLoop {
            return resolve(host: host, port: port, on: loop).flatMap { addresses in
                EpollConnector.connect(to: addresses, on: loop, timeout: timeout, initializer: initializer)
            }
        }
        #endif
        let bootstrap = ClientBootstrap(group: eventLoop).connectTimeout(timeout).channelInitializer(initializer)
        if host.hasPrefix("/") { return bootstrap.connect(unixDomainSocketPath: Self.unixSocketPath(host, port)) }
        return bootstrap.connect(host: host, port: port)
    }

    #if os(Linux)
    /// The pooler's handlers behind the transport's read hook (the pooler does not know the transport).
    private final class ReadForwarder: EpollReadReceiver {
        let receiver: DirectReadReceiver
        init(_ receiver: DirectReadReceiver) { self.receiver = receiver }
        func channelRead(_ buffer: ByteBuffer) { receiver.directRead(buffer) }
        func channelReadComplete() { receiver.directReadComplete() }
    }

    /// A numeric address at once; a name through getaddrinfo on the thread pool (it blocks).
    private func resolve(host: String, port: Int, on loop: EventLoop) -> EventLoopFuture<[SocketAddress]> {
        if let numeric = try? SocketAddress(ipAddress: host, port: port) { return loop.makeSucceededFuture([numeric]) }
        if host.hasPrefix("/") { return loop.makeCompletedFuture { try EpollConnector.resolve(host: host, port: port) } }
        return threadPool.runIfActive(eventLoop: loop) { try EpollConnector.resolve(host: host, port: port) }
    }
    #endif
}
