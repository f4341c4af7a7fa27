/// The socket options of every client and server connection: TCP_NODELAY, SO_KEEPALIVE and the keepalive
/// settings from `general`.
#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
#if os(Linux)
import EpollTransport
#endif

/// TCP keepalive settings from `general` (seconds, and milliseconds for the user timeout; 0 leaves the
/// kernel's default).
struct TCPKeepalive: Sendable {
    /// An integer socket option as setsockopt(2) takes it.
    struct RawOption: Sendable, Equatable {
        let level: CInt
        let name: CInt
        let value: CInt
    }

    let idle: Int
    let interval: Int
    let count: Int
    let userTimeout: Int
    /// SO_KEEPALIVE and the TCP keepalive settings that are not 0, worked out once (not per connection).
    let keepaliveOptions: [RawOption]
    /// TCP_NODELAY and the keepalive options: what every connection gets.
    var allOptions: [RawOption] { [RawOption(level: CInt(IPPROTO_TCP), name: CInt(TCP_NODELAY), value: 1)] + keepaliveOptions }
    /// Whether accepted sockets were seen to inherit `allOptions` from the listening socket (where the listener
    /// set them): nil until the first accepted connection is checked.
    let listenerOptionsInherited = NIOLockedValueBox<Bool?>(nil)

    init(idle: Int, interval: Int, count: Int, userTimeout: Int) {
        self.idle = idle
        self.interval = interval
        self.count = count
        self.userTimeout = userTimeout
        var options = [RawOption(level: SOL_SOCKET, name: SO_KEEPALIVE, value: 1)]
        #if os(Linux)
        let tcp: [(CInt, Int)] = [(CInt(TCP_KEEPIDLE), idle), (CInt(TCP_KEEPINTVL), interval),
                                  (CInt(TCP_KEEPCNT), count), (CInt(TCP_USER_TIMEOUT), userTimeout)]
        for (name, value) in tcp where value > 0 {
            options.append(RawOption(level: CInt(IPPROTO_TCP), name: name, value: CInt(clamping: value)))
        }
        #endif
        self.keepaliveOptions = options
    }

    /// Sets the options synchronously on the channel's loop (the initializers already run there). Through futures, as
    /// bootstrap options are applied, they were an eighth of the pooler's user CPU per login under `pgbench -C`;
    /// on pgcat's own channels they go straight to setsockopt(2). A failing keepalive option is ignored: the
    /// connection works without it.
    ///
    /// `fromListener`: an accepted connection of a listener that set `allOptions` itself. Linux copies them to the
    /// accepted socket; the first such connection is checked with getsockopt(2) and, when they all match, the
    /// later ones skip the five or six setsockopt(2) calls (a few microseconds of each login under `pgbench -C`).
    func apply(to channel: Channel, recvAllocator: AdaptiveRecvByteBufferAllocator? = nil,
               fromListener: Bool = false) -> EventLoopFuture<Void> {
        guard channel.eventLoop.inEventLoop else {
            return channel.eventLoop.flatSubmit { self.apply(to: channel, recvAllocator: recvAllocator, fromListener: fromListener) }
        }
        if case .unixDomainSocket? = channel.remoteAddress {
            return channel.eventLoop.makeSucceededVoidFuture()  // a server's Unix socket: no TCP options to set
        }
        #if os(Linux)
        if let socket = channel as? EpollSocketChannel {
            if fromListener, inheritedFromListener(socket) {
                if let recvAllocator { socket.setReceiveAllocator(recvAllocator) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            do {
                try socket.setSocketOption(level: CInt(IPPROTO_TCP), name: CInt(TCP_NODELAY), value: 1)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            if let recvAllocator { socket.setReceiveAllocator(recvAllocator) }
            for option in keepaliveOptions {
                try? socket.setSocketOption(level: option.level, name: option.name, value: option.value)
            }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        #endif
        guard let sync = channel.syncOptions else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)  // not a socket channel
        }
        do {
            try sync.setOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            if let recvAllocator { try sync.setOption(ChannelOptions.recvAllocator, value: recvAllocator) }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        for option in keepaliveOptions {
            let socketOption = ChannelOptions.Types.SocketOption(level: NIOBSDSocket.OptionLevel(rawValue: option.level),
                                                                 name: NIOBSDSocket.Option(rawValue: option.name))
            try? sync.setOption(socketOption, value: SocketOptionValue(option.value))
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    #if os(Linux)
    /// Whether `socket` (accepted) already has `allOptions`: checked on the first connection, remembered after.
    private func inheritedFromListener(_ socket: EpollSocketChannel) -> Bool {
        if let known = listenerOptionsInherited.withLockedValue({ $0 }) { return known }
        let inherited = allOptions.allSatisfy { option in
            // SO_KEEPALIVE and TCP_NODELAY read back as any non-zero value.
            guard let value = socket.socketOption(level: option.level, name: option.name) else { return false }
            return option.value == 1 ? value != 0 : value == option.value
        }
        listenerOptionsInherited.withLockedValue { $0 = inherited }
        return inherited
    }
    #endif
}
