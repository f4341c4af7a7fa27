// Minimal 1:1 TCP relay on a hand-written epoll loop that conforms to NIO's EventLoop protocol, with each socket
// behind a small custom NIO Channel and its ChannelPipeline: the relay's handlers are ordinary ChannelHandlers, as
// pgcat's are. Measures what NIO's pipeline costs on its own, without NIOPosix's selector and socket channels.
import CEpoll
import Dispatch
import Glibc
import NIOCore

final class EpollLoop: EventLoop, @unchecked Sendable {
    let ep = epoll_create1(0)
    var thread = pthread_self()
    var channels = [FDChannel?](repeating: nil, count: 65536)
    var tasks: [() -> Void] = []

    var inEventLoop: Bool { pthread_equal(pthread_self(), thread) != 0 }
    func execute(_ task: @escaping @Sendable () -> Void) { tasks.append(task) }  // the spike runs on one thread
    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        fatalError("not used by the relay")
    }
    func scheduleTask<T>(in: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        fatalError("not used by the relay")
    }
    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {}

    func watch(_ channel: FDChannel) {
        channels[Int(channel.fd)] = channel
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.fd = channel.fd
        epoll_ctl(ep, EPOLL_CTL_ADD, channel.fd, &ev)
    }

    func run(listener: Int32, accepted: (Int32) -> Void) -> Never {
        thread = pthread_self()
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.fd = listener
        epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev)
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while true {
            let n = epoll_wait(ep, &events, Int32(events.count), -1)
            for i in 0..<max(0, Int(n)) {
                let fd = events[i].data.fd
                if fd == listener {
                    let c = accept(listener, nil, nil)
                    if c >= 0 { accepted(c) }
                } else if let channel = channels[Int(fd)] {
                    channel.readable()
                }
            }
            while !tasks.isEmpty {
                let batch = tasks
                tasks = []
                for task in batch { task() }
            }
        }
    }
}

final class FDChannel: Channel, ChannelCore, @unchecked Sendable {
    let fd: Int32
    let loop: EpollLoop
    private var _pipeline: ChannelPipeline!
    private let closePromise: EventLoopPromise<Void>
    private var open = true
    private var outbound: [ByteBuffer] = []
    private var inbound: ByteBuffer
    let allocator = ByteBufferAllocator()

    init(fd: Int32, loop: EpollLoop) {
        self.fd = fd
        self.loop = loop
        self.closePromise = loop.makePromise()
        self.inbound = ByteBufferAllocator().buffer(capacity: 65536)
        self._pipeline = ChannelPipeline(channel: self)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    var eventLoop: EventLoop { loop }
    var pipeline: ChannelPipeline { _pipeline }
    var closeFuture: EventLoopFuture<Void> { closePromise.futureResult }
    var localAddress: SocketAddress? { nil }
    var remoteAddress: SocketAddress? { nil }
    var parent: Channel? { nil }
    var isWritable: Bool { true }
    var isActive: Bool { open }
    var _channelCore: ChannelCore { self }
    func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        loop.makeSucceededVoidFuture()
    }
    func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        loop.makeFailedFuture(ChannelError.operationUnsupported)
    }

    /// One read per readiness event, into a buffer reused once the pipeline let go of it.
    func readable() {
        inbound.clear()
        let count = inbound.writeWithUnsafeMutableBytes(minimumWritableBytes: 65536) { pointer in
            max(0, recv(fd, pointer.baseAddress, pointer.count, 0))
        }
        if count == 0 {
            close0(error: ChannelError.eof, mode: .all, promise: nil)
            return
        }
        pipeline.fireChannelRead(inbound)
        pipeline.fireChannelReadComplete()
    }

    func localAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    func remoteAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    func register0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) { promise?.fail(ChannelError.operationUnsupported) }
    func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        outbound.append(unwrapData(data, as: ByteBuffer.self))
        promise?.succeed()
    }
    func flush0() {
        for buffer in outbound {
            buffer.withUnsafeReadableBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let sent = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                    if sent > 0 { offset += sent; continue }
                    if sent < 0 && errno == EAGAIN {
                        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                        poll(&pfd, 1, -1)  // spike: block until writable
                        continue
                    }
                    if sent < 0 && errno == EINTR { continue }
                    return
                }
            }
        }
        outbound.removeAll(keepingCapacity: true)
    }
    func read0() {}
    func close0(error: Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard open else { promise?.succeed(); return }
        open = false
        loop.channels[Int(fd)] = nil
        Glibc.close(fd)
        pipeline.fireChannelInactive()
        promise?.succeed()
        closePromise.succeed()
    }
    func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) { promise?.succeed() }
    func channelRead0(_ data: NIOAny) {}
    func errorCaught0(error: Error) {}
}

final class Glue: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var partner: Glue?
    var context: ChannelHandlerContext?
    var pending = false
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
        partner?.pending = true
    }
    func channelReadComplete(context: ChannelHandlerContext) {
        if let p = partner, p.pending { p.pending = false; p.context?.flush() }
    }
    func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }
}

let listenPort = UInt16(CommandLine.arguments[1])!
let upstreamPort = UInt16(CommandLine.arguments[2])!
func loopback(_ port: UInt16) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    return a
}
let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var one: Int32 = 1
setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
var la = loopback(listenPort)
precondition(withUnsafePointer(to: &la) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
} == 0)
listen(listener, 1024)
let loop = EpollLoop()
loop.run(listener: listener) { clientFD in
    let serverFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var ua = loopback(upstreamPort)
    _ = withUnsafePointer(to: &ua) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(serverFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    let client = FDChannel(fd: clientFD, loop: loop)
    let server = FDChannel(fd: serverFD, loop: loop)
    let clientGlue = Glue()
    let serverGlue = Glue()
    clientGlue.partner = serverGlue
    serverGlue.partner = clientGlue
    try! client.pipeline.syncOperations.addHandler(clientGlue)
    try! server.pipeline.syncOperations.addHandler(serverGlue)
    client.pipeline.fireChannelActive()
    server.pipeline.fireChannelActive()
    loop.watch(client)
    loop.watch(server)
}
