/// The socket options of every client and server connection: TCP_NODELAY, SO_KEEPALIVE and the keepalive
/// settings from `general`.
import NIOCore
import NIOPosix

/// TCP keepalive settings from `general` (seconds, and milliseconds for the user timeout; 0 leaves the
/// kernel's default).
struct TCPKeepalive: Sendable {
    var idle: Int
    var interval: Int
    var count: Int
    var userTimeout: Int

    /// Sets the options synchronously on the channel's loop (the initializers already run there). Through futures, as
    /// bootstrap options are applied, they were an eighth of the pooler's user CPU per login under `pgbench -C`. A
    /// failing keepalive option is ignored: the connection works without it.
    func apply(to channel: Channel, recvAllocator: RecvByteBufferAllocator? = nil) -> EventLoopFuture<Void> {
        guard channel.eventLoop.inEventLoop else {
            return channel.eventLoop.flatSubmit { self.apply(to: channel, recvAllocator: recvAllocator) }
        }
        guard let sync = channel.syncOptions else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)  // not a socket channel
        }
        do {
            try sync.setOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            if let recvAllocator { try sync.setOption(ChannelOptions.recvAllocator, value: recvAllocator) }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        for (option, value) in socketOptions { try? sync.setOption(option, value: value) }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// SO_KEEPALIVE and the TCP keepalive settings that are not 0.
    private var socketOptions: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] {
        var options = [(ChannelOptions.socketOption(.so_keepalive), SocketOptionValue(1))]
        #if os(Linux)
        let tcp: [(Int32, Int)] = [
            (Int32(TCP_KEEPIDLE), idle),
            (Int32(TCP_KEEPINTVL), interval),
            (Int32(TCP_KEEPCNT), count),
            (Int32(TCP_USER_TIMEOUT), userTimeout),
        ]
        for (name, value) in tcp where value > 0 {
            options.append((ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name)),
                            SocketOptionValue(value)))
        }
        #endif
        return options
    }
}
