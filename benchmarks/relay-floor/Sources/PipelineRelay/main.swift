// Minimal 1:1 TCP relay on a hand-written epoll loop that conforms to NIO's EventLoop protocol, with each socket
// behind a small custom NIO Channel and its ChannelPipeline: the relay's handlers are ordinary ChannelHandlers, as
// pgcat's are. Measures what NIO's pipeline costs on its own, without NIOPosix's selector and socket channels.
import CEpoll
import Dispatch
import Glibc
import LoopbackSockets
import NIOCore
import RelayGlue

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
        makeRelaySocket(fd)
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
            buffer.withUnsafeReadableBytes { sendAll(fd, $0.baseAddress!, $0.count) }
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

let listenPort = UInt16(CommandLine.arguments[1])!
let upstreamPort = UInt16(CommandLine.arguments[2])!
let listener = listenOnLoopback(port: listenPort)
let loop = EpollLoop()
loop.run(listener: listener) { clientFD in
    let client = FDChannel(fd: clientFD, loop: loop)
    let server = FDChannel(fd: connectToLoopback(port: upstreamPort), loop: loop)
    let (clientGlue, serverGlue) = Glue.pair()
    try! client.pipeline.syncOperations.addHandler(clientGlue)
    try! server.pipeline.syncOperations.addHandler(serverGlue)
    client.pipeline.fireChannelActive()
    server.pipeline.fireChannelActive()
    loop.watch(client)
    loop.watch(server)
}
