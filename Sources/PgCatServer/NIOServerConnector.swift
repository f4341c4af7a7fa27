/// Opens TCP connections to PostgreSQL servers with NIOPosix (every resolved address is tried in turn).
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Pooler
import PostgresWire

struct NIOServerConnector: ServerConnector {
    let keepalive: TCPKeepalive
    let threadPool: NIOThreadPool
    /// `server_tls` in force (swapped on reload; connections already open keep theirs).
    let serverTLS = NIOLockedValueBox<ServerTLSPolicy?>(nil)

    func runBlocking(on eventLoop: EventLoop, _ work: @escaping @Sendable () -> Void) -> EventLoopFuture<Void> {
        threadPool.runIfActive(eventLoop: eventLoop, work)
    }

    func connect(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                 handler: ServerConnection) -> EventLoopFuture<Void> {
        let policy = serverTLS.withLockedValue { $0 }
        let negotiator = policy.map {
            ServerTLSNegotiator(policy: $0, host: host, handler: handler, done: eventLoop.makePromise())
        }
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                keepalive.apply(to: channel).flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler((negotiator as ChannelHandler?) ?? handler)
                }
            }
            .connect(host: host, port: port)
        guard let negotiator else { return connected.map { _ in } }
        return connected.flatMap { channel in
            negotiator.arm(timeout: timeout, on: channel)
            return negotiator.future
        }
    }

    func plaintextDescriptor(of channel: Channel) -> CInt? {
        ChannelDescriptor.plaintextTCP(channel)
    }

    @discardableResult
    func sendCancel(host: String, port: Int, key: BackendKeyData, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port)
            .flatMap { channel in
                var buffer = channel.allocator.buffer(capacity: 16)
                MessageEncoder.cancelRequest(key, into: &buffer)
                // Postgres closes the connection once it has handled the request; do not wait forever.
                let deadline = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
                return channel.writeAndFlush(buffer).flatMap { channel.closeFuture }.always { _ in deadline.cancel() }
            }
    }
}
