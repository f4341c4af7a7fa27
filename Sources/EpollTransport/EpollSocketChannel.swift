/// A connected TCP socket on an `EpollEventLoop`, behind NIO's `Channel` API: handlers, NIOSSL and the pooler's
/// backpressure (auto-read, writability) work on it as on a NIOPosix socket channel.
///
/// What it does the way NIOPosix does, because handlers rely on it:
/// - reads: up to `maxMessagesPerRead` reads per readiness, each fired as `channelRead`, then one
///   `channelReadComplete`; sizes from the `RecvByteBufferAllocator`; with auto-read off, one read per `read()`.
///   The receive buffer is reused when the pipeline let go of it (ByteBuffer's `clear` copies on write otherwise).
/// - end of input closes the channel (`ChannelError.eof`); a read error is fired as `errorCaught`, then closes.
///   The peer's shutdown is watched (EPOLLRDHUP) with auto-read off too: what is left is then read and the channel
///   closed, as NIOPosix does on readEOF, so a server that went away is noticed under backpressure.
/// - writes queue with their promises until `flush`; what the kernel does not take waits for EPOLLOUT;
///   writability follows the write-buffer water marks (32/64 KiB) and fires `channelWritabilityChanged`.
/// - close: deregister, close the descriptor, fail pending writes, succeed the promise, fire `channelInactive`;
///   `channelUnregistered`, handler removal and `closeFuture` follow on the next loop tick.
///
/// It is created only around a descriptor that is already connected (`EpollListener` accepts,
/// `EpollConnector` connects), so `connect` and `bind` are unsupported. Used on its loop, except the
/// `isActive` / `isWritable` flags and the addresses, which any thread may read.
#if os(Linux)
import Atomics
import CEpoll
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// Takes a channel's reads past its pipeline (`EpollSocketChannel.deliverReads(to:)`). Called on the loop.
public protocol EpollReadReceiver: AnyObject {
    func channelRead(_ buffer: ByteBuffer)
    func channelReadComplete()
}

public final class EpollSocketChannel: Channel, ChannelCore, EpollSource, @unchecked Sendable {
    /// The socket; the pooler's relay writes to it directly (see `ServerConnector.startDirectIO` in the pooler).
    public let descriptor: CInt
    let loop: EpollEventLoop
    public let allocator = ByteBufferAllocator()
    private var _pipeline: ChannelPipeline!
    private let closePromise: EventLoopPromise<Void>
    private let activeFlag = ManagedAtomic(false)
    private let writableFlag = ManagedAtomic(true)
    private var open = true
    private var registered = false
    private var firedRegistered = false
    private var interest: UInt32 = 0

    // Reading.
    private var autoRead = true
    private var readRequested = false
    private var sizer = ReceiveSizer.adaptive(AdaptiveRecvByteBufferAllocator())
    private var inbound = ByteBuffer()
    private var reallocate = true
    private var maxMessagesPerRead = 4
    /// Takes the reads instead of the pipeline (see `deliverReads(to:)`).
    private var readReceiver: EpollReadReceiver?

    // Writing.
    private struct PendingWrite {
        var buffer: ByteBuffer
        let promise: EventLoopPromise<Void>?
    }
    private var pendingWrites = CircularBuffer<PendingWrite>(initialCapacity: 4)
    /// The first `flushedCount` pending writes were flushed and go out as the socket takes them.
    private var flushedCount = 0
    private var pendingBytes = 0
    private var waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)
    private var flushing = false

    /// Set when a write failed: later writes fail with it until the deferred close.
    private var writeError: Error?

    // Addresses (any thread; read once, while the descriptor is surely this socket's).
    private let local: SocketAddress?
    private let remote: SocketAddress?

    /// `local`: the socket's own address when the caller knows it (an accepting listener bound to one address);
    /// nil asks the kernel.
    init(descriptor: CInt, remote: SocketAddress?, local: SocketAddress? = nil, loop: EpollEventLoop) {
        self.descriptor = descriptor
        self.remote = remote
        self.local = local ?? Self.address(of: descriptor, getsockname)
        self.loop = loop
        self.closePromise = loop.makePromise()
        self._pipeline = ChannelPipeline(channel: self)
    }

    /// Runs `initializer` (it adds the handlers), then makes the channel active; a failed initializer closes the
    /// socket. As NIO's bootstraps do, for accepted and connected sockets alike.
    func start(_ initializer: (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Void> {
        initializer(self).hop(to: loop).always { [self] result in
            switch result {
            case .success: activate()
            case .failure(let error): close0(error: error, mode: .all, promise: nil)
            }
        }
    }

    /// Registers the socket with the loop and fires `channelRegistered` and `channelActive`. Called on the loop.
    private func activate() {
        guard open else { return }
        firedRegistered = true
        pipeline.syncOperations.fireChannelRegistered()
        guard open else { return }  // a handler closed it on registration
        activeFlag.store(true, ordering: .releasing)
        pipeline.syncOperations.fireChannelActive()
        guard open else { return }
        interest = wantedEvents
        do {
            try loop.register(descriptor, self, events: interest)
            registered = true
        } catch {
            pipeline.syncOperations.fireErrorCaught(error)
            close0(error: error, mode: .all, promise: nil)
        }
    }

    // MARK: Channel

    public var eventLoop: EventLoop { loop }
    public var pipeline: ChannelPipeline { _pipeline }
    public var closeFuture: EventLoopFuture<Void> { closePromise.futureResult }
    public var parent: Channel? { nil }
    public var isWritable: Bool { writableFlag.load(ordering: .relaxed) }
    public var isActive: Bool { activeFlag.load(ordering: .acquiring) }
    public var _channelCore: ChannelCore { self }
    public var remoteAddress: SocketAddress? { remote }

    public var localAddress: SocketAddress? { local }

    public var syncOptions: NIOSynchronousChannelOptions? { EpollSocketOptions(channel: self) }

    public func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        guard loop.inEventLoop else { return loop.submit { try self.setOption0(option, value: value) } }
        return loop.makeCompletedFuture { try setOption0(option, value: value) }
    }

    public func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        guard loop.inEventLoop else { return loop.submit { try self.getOption0(option) } }
        return loop.makeCompletedFuture { try getOption0(option) }
    }

    // MARK: ChannelCore

    public func localAddress0() throws -> SocketAddress {
        guard let address = localAddress else { throw ChannelError.unknownLocalAddress }
        return address
    }

    public func remoteAddress0() throws -> SocketAddress {
        guard let remote else { throw ChannelError.operationUnsupported }
        return remote
    }

    public func register0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    public func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    public func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }
    public func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard open else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if let writeError {
            promise?.fail(writeError)
            return
        }
        guard case .byteBuffer(let buffer)? = tryUnwrapData(data, as: IOData.self) else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        pendingWrites.append(PendingWrite(buffer: buffer, promise: promise))
        pendingBytes += buffer.readableBytes
        if pendingBytes > waterMark.high && writableFlag.load(ordering: .relaxed) {
            writableFlag.store(false, ordering: .relaxed)
            pipeline.syncOperations.fireChannelWritabilityChanged()
        }
    }

    public func flush0() {
        guard open else { return }
        flushedCount = pendingWrites.count
        flushNow()
    }

    public func read0() {
        guard open, !autoRead, !readRequested else { return }
        readRequested = true
        updateInterest()
    }

    public func close0(error: Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        guard open else {
            promise?.fail(ChannelError.alreadyClosed)
            return
        }
        open = false
        readReceiver = nil  // it holds the handler; the pipeline lets go of its handlers a tick later
        let wasActive = activeFlag.exchange(false, ordering: .acquiringAndReleasing)
        if registered {
            loop.deregister(descriptor)
            registered = false
        }
        Glibc.close(descriptor)
        failPendingWrites(error)
        promise?.succeed()
        if wasActive { pipeline.syncOperations.fireChannelInactive() }
        let pipeline = self.pipeline
        let fireUnregistered = firedRegistered
        loop.execute { [self] in
            // A tick later, as NIO does: handlers may still be walking the pipeline.
            if fireUnregistered { pipeline.syncOperations.fireChannelUnregistered() }
            removeHandlers(pipeline: pipeline)
            closePromise.succeed()
        }
    }

    public func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func channelRead0(_ data: NIOAny) {}
    public func errorCaught0(error: Error) {}

    // MARK: EpollSource

    func epollReady(_ events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 { flushNow() }
        guard open, writeError == nil else { return }  // a failed write reads what is left, then closes (failWrites)
        let ended = EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        if interest & EPOLLIN.rawValue != 0 {
            if events & (EPOLLIN.rawValue | ended) != 0 { readFromSocket() }
        } else if events & ended != 0 {
            // Not reading (backpressure), but the peer sent its last byte or is gone. As NIOPosix does on readEOF:
            // read what is left regardless of auto-read, and close at the end of it. (Level-triggered: reported
            // until then, so a drain cut short by maxMessagesPerRead goes on at the next wait.)
            readFromSocket(draining: true)
        }
    }

    func loopClosing() { close0(error: EventLoopError.shutdown, mode: .all, promise: nil) }

    // MARK: reading

    /// `draining`: read what is there regardless of auto-read, because the connection is ending (the peer shut
    /// down, or a write failed and the channel closes after this read).
    private func readFromSocket(draining: Bool = false) {
        var reads = 0
        while open {
            if reallocate {
                inbound = sizer.buffer(allocator: allocator)
                reallocate = false
            } else {
                inbound.clear()  // new storage only if the pipeline kept the last read
            }
            var result = 0
            var code: CInt = 0
            let capacity = inbound.writableBytes
            inbound.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { pointer in
                result = Glibc.recv(descriptor, pointer.baseAddress, pointer.count, 0)
                if result < 0 { code = errno }
                return max(0, result)
            }
            if result > 0 {
                reads += 1
                reallocate = sizer.record(actualReadBytes: result)
                if !autoRead { readRequested = false }
                if let readReceiver {
                    readReceiver.channelRead(inbound)
                } else {
                    pipeline.syncOperations.fireChannelRead(NIOAny(inbound))
                }
                if result < capacity || reads >= maxMessagesPerRead || !(autoRead || readRequested || draining) { break }
            } else if result == 0 {
                if reads > 0 { fireReadComplete() }
                close0(error: ChannelError.eof, mode: .all, promise: nil)
                return
            } else if code == EINTR {
                continue
            } else if code == EAGAIN || code == EWOULDBLOCK {
                break
            } else {
                if reads > 0 { fireReadComplete() }
                let error = IOError(errnoCode: code, reason: "read(descriptor:pointer:size:)")
                pipeline.syncOperations.fireErrorCaught(error)
                close0(error: error, mode: .all, promise: nil)
                return
            }
        }
        if reads > 0 && open { fireReadComplete() }
        updateInterest()
    }

    private func fireReadComplete() {
        if let readReceiver {
            readReceiver.channelReadComplete()
        } else {
            pipeline.syncOperations.fireChannelReadComplete()
        }
    }

    /// From now on, hands every read and read-complete to `receiver` directly instead of firing them through the
    /// pipeline. Everything else (errors, inactive, writability, outbound) still
    /// goes through the pipeline. Only for a receiver that is the pipeline's one inbound handler and consumes what
    /// it reads, so that skipping the pipeline walk changes nothing: the pooler's relay, once any TLS handshake is
    /// over. Called on the loop. Why: the walk (NIOAny boxing, two handler contexts) was about a tenth of the
    /// pooler's CPU per relayed message.
    public func deliverReads(to receiver: EpollReadReceiver) {
        loop.preconditionInEventLoop()
        readReceiver = open ? receiver : nil
    }

    // MARK: writing

    /// Writes flushed data until the socket is full; completes the promises of what went out.
    private func flushNow() {
        // A promise callback flushed again: the loop below picks that up. After a write error nothing is sent.
        guard !flushing, writeError == nil else { return }
        flushing = true
        defer { flushing = false }
        while open && flushedCount > 0 {
            if pendingWrites[pendingWrites.startIndex].buffer.readableBytes == 0 {
                let write = pendingWrites.removeFirst()
                flushedCount -= 1
                write.promise?.succeed()
                continue
            }
            let (sent, code) = writeFlushed()
            if sent < 0 {
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { break }
                failWrites(IOError(errnoCode: code, reason: "sendmsg(descriptor:iovecs:)"))
                return
            }
            if !consume(sent) { break }  // the socket took only part: wait for EPOLLOUT
        }
        guard open else { return }
        if !writableFlag.load(ordering: .relaxed) && pendingBytes <= waterMark.low {
            writableFlag.store(true, ordering: .relaxed)
            pipeline.syncOperations.fireChannelWritabilityChanged()
        }
        updateInterest()
    }

    /// The peer is gone for writes. What it sent before (a server's FATAL, say) may still wait in the receive
    /// buffer: like NIOPosix, read it before closing, but on the next tick, not inside the handler that flushed.
    private func failWrites(_ error: Error) {
        writeError = error
        failPendingWrites(error)
        loop.execute { [self] in
            guard open else { return }
            readFromSocket(draining: true)
            if open { close0(error: error, mode: .all, promise: nil) }
        }
    }

    /// Empties the write queue, failing every promise in it (the queue is emptied first: a callback may write).
    private func failPendingWrites(_ error: Error) {
        let writes = pendingWrites
        pendingWrites.removeAll()
        flushedCount = 0
        pendingBytes = 0
        for write in writes { write.promise?.fail(error) }
    }

    /// One send (or sendmsg over several flushed writes) of the flushed data at the head.
    private func writeFlushed() -> (Int, CInt) {
        let count = min(flushedCount, EpollEventLoop.maxIOVectors)
        if count == 1 {
            let result = pendingWrites[pendingWrites.startIndex].buffer.withUnsafeReadableBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL))
            }
            return (result, result < 0 ? errno : 0)
        }
        let vectors = loop.ioVectors
        var index = pendingWrites.startIndex
        for slot in 0..<count {
            // The buffers stay in `pendingWrites`, unchanged, until writev returns: their storage outlives the call.
            pendingWrites[index].buffer.withUnsafeReadableBytes {
                vectors[slot] = iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
            }
            index = pendingWrites.index(after: index)
        }
        // sendmsg rather than writev: writev has no MSG_NOSIGNAL, and a reset peer would raise SIGPIPE.
        var message = msghdr()
        message.msg_iov = vectors
        message.msg_iovlen = count
        let result = Glibc.sendmsg(descriptor, &message, CInt(MSG_NOSIGNAL))
        return (result, result < 0 ? errno : 0)
    }

    /// Drops `sent` bytes from the head of the queue, completing the writes that are done. Returns whether
    /// everything attempted went out (false: the socket is full).
    private func consume(_ sent: Int) -> Bool {
        var remaining = sent
        while remaining > 0 || (flushedCount > 0 && pendingWrites[pendingWrites.startIndex].buffer.readableBytes == 0) {
            guard open, flushedCount > 0 else { return false }
            let size = pendingWrites[pendingWrites.startIndex].buffer.readableBytes
            if size <= remaining {
                remaining -= size
                pendingBytes -= size
                let write = pendingWrites.removeFirst()
                flushedCount -= 1
                write.promise?.succeed()
            } else {
                pendingWrites[pendingWrites.startIndex].buffer.moveReaderIndex(forwardBy: remaining)
                pendingBytes -= remaining
                return false
            }
        }
        return true
    }

    // MARK: interest and options

    private var wantedEvents: UInt32 {
        // The peer's shutdown is watched even while not reading, so that a closed connection is noticed.
        var events: UInt32 = EPOLLRDHUP.rawValue
        if autoRead || readRequested { events |= EPOLLIN.rawValue }
        if flushedCount > 0 { events |= EPOLLOUT.rawValue }
        return events
    }

    private func updateInterest() {
        guard registered, open else { return }
        let wanted = wantedEvents
        if wanted != interest {
            interest = wanted
            loop.modify(descriptor, events: wanted)
        }
    }

    /// Sets an integer socket option with setsockopt(2), without `ChannelOption`'s generic casts (those were most
    /// of the cost of a login's five or six options). On the loop.
    public func setSocketOption(level: CInt, name: CInt, value: CInt) throws {
        loop.preconditionInEventLoop()
        var raw = value
        guard setsockopt(descriptor, level, name, &raw, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
            throw IOError(errnoCode: errno, reason: "setsockopt")
        }
    }

    /// Reads an integer socket option with getsockopt(2); nil if that fails. On the loop.
    public func socketOption(level: CInt, name: CInt) -> CInt? {
        loop.preconditionInEventLoop()
        var raw: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(descriptor, level, name, &raw, &length) == 0 else { return nil }
        return raw
    }

    /// Sizes the channel's receive buffers with `allocator` (as `ChannelOptions.recvAllocator`). On the loop.
    public func setReceiveAllocator(_ allocator: AdaptiveRecvByteBufferAllocator) {
        loop.preconditionInEventLoop()
        sizer = .adaptive(allocator)
        reallocate = true
    }

    func setOption0<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        switch option {
        case let socketOption as ChannelOptions.Types.SocketOption:
            var raw = value as! SocketOptionValue
            let result = setsockopt(descriptor, socketOption.optionLevel.rawValue, socketOption.optionName.rawValue,
                                    &raw, socklen_t(MemoryLayout<SocketOptionValue>.size))
            guard result == 0 else { throw IOError(errnoCode: errno, reason: "setsockopt") }
        case is ChannelOptions.Types.AutoReadOption:
            let enabled = value as! Bool
            guard enabled != autoRead else { break }  // as NIO: an unchanged value keeps a requested read
            autoRead = enabled
            if !autoRead { readRequested = false }
            updateInterest()
        case is ChannelOptions.Types.RecvAllocatorOption:
            sizer = ReceiveSizer(value as! RecvByteBufferAllocator)
            reallocate = true
        case is ChannelOptions.Types.WriteBufferWaterMarkOption:
            waterMark = value as! ChannelOptions.Types.WriteBufferWaterMark
        case is ChannelOptions.Types.MaxMessagesPerReadOption:
            maxMessagesPerRead = max(1, Int(value as! UInt))
        case is ChannelOptions.Types.AllowRemoteHalfClosureOption:
            guard !(value as! Bool) else { throw ChannelError.operationUnsupported }
        case is ChannelOptions.Types.WriteSpinOption, is ChannelOptions.Types.ConnectTimeoutOption,
             is ChannelOptions.Types.AllocatorOption:
            break  // nothing to tune here
        default:
            throw ChannelError.operationUnsupported
        }
    }

    func getOption0<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        switch option {
        case let socketOption as ChannelOptions.Types.SocketOption:
            var raw: SocketOptionValue = 0
            var length = socklen_t(MemoryLayout<SocketOptionValue>.size)
            let result = getsockopt(descriptor, socketOption.optionLevel.rawValue, socketOption.optionName.rawValue,
                                    &raw, &length)
            guard result == 0 else { throw IOError(errnoCode: errno, reason: "getsockopt") }
            return raw as! Option.Value
        case is ChannelOptions.Types.AutoReadOption: return autoRead as! Option.Value
        case is ChannelOptions.Types.RecvAllocatorOption: return sizer.allocator as! Option.Value
        case is ChannelOptions.Types.WriteBufferWaterMarkOption: return waterMark as! Option.Value
        case is ChannelOptions.Types.MaxMessagesPerReadOption: return UInt(maxMessagesPerRead) as! Option.Value
        case is ChannelOptions.Types.AllowRemoteHalfClosureOption: return false as! Option.Value  // unsupported
        case is ChannelOptions.Types.AllocatorOption: return allocator as! Option.Value
        case is ChannelOptions.Types.BufferedWritableBytesOption: return pendingBytes as! Option.Value
        default: throw ChannelError.operationUnsupported
        }
    }

    /// The socket's address as `query` (getsockname, getpeername) reports it.
    static func address(
        of descriptor: CInt,
        _ query: (CInt, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(descriptor, $0, &length) == 0 }
        }
        return ok ? SocketAddress(storage: storage) : nil
    }
}

/// The receive-buffer sizing: NIO's adaptive allocator held as its concrete type (as an existential it is boxed,
/// and its mutating `record` after every read copied the box: ~4% of the relay's user time), any other as given.
private enum ReceiveSizer {
    case adaptive(AdaptiveRecvByteBufferAllocator)
    case other(RecvByteBufferAllocator)

    init(_ allocator: RecvByteBufferAllocator) {
        if let adaptive = allocator as? AdaptiveRecvByteBufferAllocator {
            self = .adaptive(adaptive)
        } else {
            self = .other(allocator)
        }
    }

    var allocator: RecvByteBufferAllocator {
        switch self {
        case .adaptive(let adaptive): return adaptive
        case .other(let other): return other
        }
    }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        switch self {
        case .adaptive(let adaptive): return adaptive.buffer(allocator: allocator)
        case .other(let other): return other.buffer(allocator: allocator)
        }
    }

    /// Whether the next read needs a buffer of another size.
    mutating func record(actualReadBytes: Int) -> Bool {
        switch self {
        case .adaptive(var adaptive):
            let changed = adaptive.record(actualReadBytes: actualReadBytes)
            self = .adaptive(adaptive)
            return changed
        case .other(var other):
            let changed = other.record(actualReadBytes: actualReadBytes)
            self = .other(other)
            return changed
        }
    }
}

/// `Channel.syncOptions` for `EpollSocketChannel` (on its loop).
struct EpollSocketOptions: NIOSynchronousChannelOptions {
    let channel: EpollSocketChannel

    func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        channel.loop.preconditionInEventLoop()
        try channel.setOption0(option, value: value)
    }

    func getOption<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        channel.loop.preconditionInEventLoop()
        return try channel.getOption0(option)
    }
}

extension SocketAddress {
    /// An IPv4 or IPv6 address from a `sockaddr_storage` (nil for other families).
    init?(storage: sockaddr_storage) {
        var storage = storage
        switch CInt(storage.ss_family) {
        case AF_INET:
            self.init(withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) })
        case AF_INET6:
            self.init(withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) })
        default:
            return nil
        }
    }
}
#endif
