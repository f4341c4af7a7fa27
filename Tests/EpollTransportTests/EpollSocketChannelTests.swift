#if os(Linux)
import Glibc
import EpollTransport
import NIOConcurrencyHelpers
import NIOCore
import XCTest

/// Real loopback sockets between an `EpollListener` and `EpollConnector`, with ordinary ChannelHandlers.
final class EpollSocketChannelTests: XCTestCase {
    private var group: EpollEventLoopGroup!

    override func setUpWithError() throws {
        group = try EpollEventLoopGroup(numberOfThreads: 2, name: "test-io")
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        group = nil
    }

    /// Echoes what it reads, flushed on read-complete.
    private final class Echo: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    }

    /// Collects what it reads and the events it sees.
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox(ByteBuffer())
        let reads = NIOLockedValueBox(0)
        let events = NIOLockedValueBox<[String]>([])
        let writabilityChanges = NIOLockedValueBox<[Bool]>([])
        func channelActive(context: ChannelHandlerContext) { events.withLockedValue { $0.append("active") } }
        func channelInactive(context: ChannelHandlerContext) { events.withLockedValue { $0.append("inactive") } }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            _ = received.withLockedValue { $0.writeBuffer(&buffer) }
            reads.withLockedValue { $0 += 1 }
        }
        func channelWritabilityChanged(context: ChannelHandlerContext) {
            let writable = context.channel.isWritable
            writabilityChanges.withLockedValue { $0.append(writable) }
        }
        var count: Int { received.withLockedValue { $0.readableBytes } }
    }

    private func listen(_ initializer: @escaping EpollListener.Initializer) throws -> EpollListener {
        try EpollListener.bind(host: "127.0.0.1", port: 0, backlog: 64, group: group,
                               childInitializer: initializer).wait()
    }

    /// A listener whose accepted channels start with auto-read off and hand what they read to `reader`; the box
    /// holds the last accepted channel.
    private func listenWithAutoReadOff(_ reader: Collector) throws -> (EpollListener, NIOLockedValueBox<Channel?>) {
        let serverSide = NIOLockedValueBox<Channel?>(nil)
        let listener = try listen { channel in
            serverSide.withLockedValue { $0 = channel }
            return channel.eventLoop.makeCompletedFuture {
                try channel.syncOptions!.setOption(ChannelOptions.autoRead, value: false)
                try channel.pipeline.syncOperations.addHandler(reader)
            }
        }
        return (listener, serverSide)
    }

    /// Bound to every interface, each accepted socket asks the kernel for its own address.
    func testAcceptedSocketsOfAWildcardListenerKnowTheirLocalAddress() throws {
        let serverSide = NIOLockedValueBox<Channel?>(nil)
        let listener = try EpollListener.bind(host: "0.0.0.0", port: 0, backlog: 16, group: group) { channel in
            serverSide.withLockedValue { $0 = channel }
            return channel.eventLoop.makeSucceededVoidFuture()
        }.wait()
        defer { _ = try? listener.close().wait() }
        XCTAssertEqual(listener.localAddress?.ipAddress, "0.0.0.0")
        let client = try connect(to: listener, Collector())
        defer { _ = try? client.close().wait() }
        waitUntil { serverSide.withLockedValue { $0 } != nil }
        let accepted = try XCTUnwrap(serverSide.withLockedValue { $0 })
        XCTAssertEqual(accepted.localAddress?.ipAddress, "127.0.0.1")
        XCTAssertEqual(accepted.localAddress?.port, listener.localAddress?.port)
        XCTAssertEqual(accepted.remoteAddress, client.localAddress)
    }

    private func connect(to listener: EpollListener, _ handler: ChannelHandler & Sendable) throws -> Channel {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: listener.localAddress!.port!)
        return try EpollConnector.connect(to: [address], on: group.loops[1], timeout: .seconds(5)) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
        }.wait()
    }

    private func waitUntil(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = NIODeadline.now() + .seconds(10)
        while !condition() && NIODeadline.now() < deadline { usleep(2000) }
        XCTAssertTrue(condition(), "timed out", file: file, line: line)
    }

    func testBytesMakeTheRoundTripAndTheChannelsKnowTheirAddresses() throws {
        let serverSide = NIOLockedValueBox<Channel?>(nil)
        let listener = try listen { channel in
            serverSide.withLockedValue { $0 = channel }
            return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Echo()) }
        }
        defer { _ = try? listener.close().wait() }
        let collector = Collector()
        let client = try connect(to: listener, collector)
        XCTAssertTrue(client.isActive)
        XCTAssertEqual(client.remoteAddress?.port, listener.localAddress?.port)
        XCTAssertNotNil(client.localAddress?.port)
        // The accepted side: its local address is the listener's (taken from it, not asked of the kernel).
        waitUntil { serverSide.withLockedValue { $0 } != nil }
        let accepted = try XCTUnwrap(serverSide.withLockedValue { $0 })
        XCTAssertEqual(accepted.localAddress, listener.localAddress)
        XCTAssertEqual(accepted.remoteAddress, client.localAddress)
        var message = client.allocator.buffer(capacity: 16)
        message.writeString("hello, pooler")
        try client.writeAndFlush(message).wait()
        waitUntil { collector.count == 13 }
        XCTAssertEqual(collector.received.withLockedValue { $0.getString(at: 0, length: 13) }, "hello, pooler")

        // Larger than the receive buffer and several writes in one flush (writev).
        var expected = ByteBuffer()
        for i in 0..<50 {
            var chunk = client.allocator.buffer(capacity: 4096)
            chunk.writeRepeatingByte(UInt8(i), count: 4096)
            expected.writeImmutableBuffer(chunk)
            client.write(chunk, promise: nil)
        }
        client.flush()
        waitUntil { collector.count == 13 + 50 * 4096 }
        let tail = collector.received.withLockedValue { $0.getSlice(at: 13, length: 50 * 4096) }
        XCTAssertEqual(tail, expected)
        XCTAssertEqual(collector.events.withLockedValue { $0 }, ["active"])
        try client.close().wait()
        XCTAssertFalse(client.isActive)
        XCTAssertEqual(collector.events.withLockedValue { $0 }, ["active", "inactive"])
        try client.closeFuture.wait()
        XCTAssertThrowsError(try client.close().wait())  // already closed
    }

    func testAReaderThatStopsMakesTheWriterUnwritableUntilItReadsAgain() throws {
        let reader = Collector()
        let (listener, serverSide) = try listenWithAutoReadOff(reader)
        defer { _ = try? listener.close().wait() }
        let writer = Collector()
        let client = try connect(to: listener, writer)
        let chunk = ByteBuffer(repeating: 7, count: 64 * 1024)
        let total = 128
        let written = try client.eventLoop.submit { () -> [EventLoopFuture<Void>] in
            (0..<total).map { _ in client.writeAndFlush(chunk) }
        }.wait()
        waitUntil { writer.writabilityChanges.withLockedValue { $0 } == [false] }
        XCTAssertFalse(client.isWritable)
        XCTAssertEqual(reader.count, 0, "auto-read is off: nothing is read before read()")

        waitUntil { serverSide.withLockedValue { $0 } != nil }
        let server = serverSide.withLockedValue { $0! }
        try server.eventLoop.submit { server.read() }.wait()
        waitUntil { reader.count > 0 }
        try server.setOption(ChannelOptions.autoRead, value: true).wait()
        for future in written { try future.wait() }
        waitUntil { reader.count == total * chunk.readableBytes }
        XCTAssertEqual(writer.writabilityChanges.withLockedValue { $0 }, [false, true])
        XCTAssertTrue(client.isWritable)
    }

    func testThePeerClosingFiresInactiveAndLaterWritesFail() throws {
        let serverSide = NIOLockedValueBox<Channel?>(nil)
        let listener = try listen { channel in
            serverSide.withLockedValue { $0 = channel }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        defer { _ = try? listener.close().wait() }
        let collector = Collector()
        let client = try connect(to: listener, collector)
        waitUntil { serverSide.withLockedValue { $0?.isActive } == true }
        try serverSide.withLockedValue { $0! }.close().wait()
        try client.closeFuture.wait()
        XCTAssertEqual(collector.events.withLockedValue { $0 }, ["active", "inactive"])
        XCTAssertThrowsError(try client.writeAndFlush(ByteBuffer(string: "late")).wait()) { error in
            XCTAssertEqual(error as? ChannelError, .ioOnClosedChannel)
        }
    }

    func testThePeerClosingIsNoticedWithAutoReadOffAndWhatItSentIsRead() throws {
        let reader = Collector()
        let (listener, serverSide) = try listenWithAutoReadOff(reader)
        defer { _ = try? listener.close().wait() }
        let client = try connect(to: listener, Collector())
        waitUntil { serverSide.withLockedValue { $0?.isActive } == true }
        try client.writeAndFlush(ByteBuffer(string: "last words")).wait()
        try client.close().wait()
        // Backpressure never lifts (no read()), yet the close arrives with what came before it, as on NIOPosix.
        waitUntil { reader.events.withLockedValue { $0 } == ["active", "inactive"] }
        XCTAssertEqual(reader.received.withLockedValue { $0.getString(at: 0, length: $0.readableBytes) }, "last words")
        XCTAssertFalse(serverSide.withLockedValue { $0!.isActive })
    }

    /// Takes reads past the pipeline (`deliverReads(to:)`).
    private final class DirectReceiver: EpollReadReceiver, @unchecked Sendable {
        let received = NIOLockedValueBox(ByteBuffer())
        let completes = NIOLockedValueBox(0)
        func channelRead(_ buffer: ByteBuffer) {
            var buffer = buffer
            _ = received.withLockedValue { $0.writeBuffer(&buffer) }
        }
        func channelReadComplete() { completes.withLockedValue { $0 += 1 } }
        var count: Int { received.withLockedValue { $0.readableBytes } }
    }

    func testReadsDeliveredPastThePipelineReachTheReceiverAndOtherEventsStillReachTheHandlers() throws {
        let handler = Collector()
        let serverSide = NIOLockedValueBox<Channel?>(nil)
        let listener = try listen { channel in
            serverSide.withLockedValue { $0 = channel }
            return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
        }
        defer { _ = try? listener.close().wait() }
        let client = try connect(to: listener, Collector())
        var first = client.allocator.buffer(capacity: 8)
        first.writeString("pipeline")
        try client.writeAndFlush(first).wait()
        waitUntil { handler.count == 8 }

        var receiver: DirectReceiver! = DirectReceiver()
        weak let weakReceiver = receiver
        let socket = try XCTUnwrap(serverSide.withLockedValue { $0 } as? EpollSocketChannel)
        try socket.eventLoop.submit { [receiver] in socket.deliverReads(to: receiver) }.wait()
        var second = client.allocator.buffer(capacity: 6)
        second.writeString("direct")
        try client.writeAndFlush(second).wait()
        waitUntil { receiver.count == 6 }
        XCTAssertEqual(receiver.received.withLockedValue { $0.getString(at: 0, length: 6) }, "direct")
        XCTAssertGreaterThanOrEqual(receiver.completes.withLockedValue { $0 }, 1)
        XCTAssertEqual(handler.count, 8, "the pipeline's handler saw only what came before")

        // The peer's close still goes through the pipeline, and the channel lets go of the receiver.
        try client.close().wait()
        waitUntil { handler.events.withLockedValue { $0 } == ["active", "inactive"] }
        try socket.closeFuture.wait()
        XCTAssertEqual(receiver.count, 6)
        receiver = nil
        XCTAssertNil(weakReceiver, "the closed channel (still referenced here) must not keep the receiver")
        try socket.eventLoop.submit { socket.deliverReads(to: DirectReceiver()) }.wait()  // ignored once closed
    }

    func testARefusedConnectNamesTheAddressAndNeverRunsTheInitializer() throws {
        let listener = try listen { $0.eventLoop.makeSucceededVoidFuture() }
        let port = listener.localAddress!.port!
        try listener.close().wait()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let refused = EpollConnector.connect(to: [address], on: group.loops[0], timeout: .seconds(5)) { channel in
            XCTFail("the initializer runs only after a connect succeeded")
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        XCTAssertThrowsError(try refused.wait()) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("127.0.0.1") && text.contains("\(port)"), text)
            XCTAssertTrue((error as? EpollConnectError)?.failures.first?.error.errnoCode == ECONNREFUSED, text)
        }
    }

    func testSocketOptionsAreSetAndReadBackThroughSyncOptions() throws {
        let listener = try listen { $0.eventLoop.makeSucceededVoidFuture() }
        defer { _ = try? listener.close().wait() }
        let client = try connect(to: listener, Collector())
        defer { _ = try? client.close().wait() }
        let (nodelay, keepalive) = try client.eventLoop.submit { () -> (SocketOptionValue, SocketOptionValue) in
            let options = client.syncOptions!
            try options.setOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            try options.setOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            return (try options.getOption(ChannelOptions.tcpOption(.tcp_nodelay)),
                    try options.getOption(ChannelOptions.socketOption(.so_keepalive)))
        }.wait()
        XCTAssertNotEqual(nodelay, 0)
        XCTAssertNotEqual(keepalive, 0)
        XCTAssertThrowsError(try client.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).wait())
        XCTAssertEqual(try client.getOption(ChannelOptions.autoRead).wait(), true)
    }

    func testAReceiveAllocatorOtherThanTheAdaptiveOneSizesTheReads() throws {
        let reader = Collector()
        let listener = try listen { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.syncOptions!.setOption(ChannelOptions.recvAllocator,
                                                   value: FixedSizeRecvByteBufferAllocator(capacity: 16))
                XCTAssertEqual(try channel.syncOptions!.getOption(ChannelOptions.recvAllocator) is
                               FixedSizeRecvByteBufferAllocator, true)
                try channel.pipeline.syncOperations.addHandler(reader)
            }
        }
        defer { _ = try? listener.close().wait() }
        let client = try connect(to: listener, Collector())
        defer { _ = try? client.close().wait() }
        try client.writeAndFlush(ByteBuffer(repeating: 1, count: 100)).wait()
        waitUntil { reader.count == 100 }
        XCTAssertGreaterThanOrEqual(reader.reads.withLockedValue { $0 }, 7, "16-byte reads: at least 7 for 100 bytes")
    }

    /// Several buffers in one flush go out with one sendmsg; to a reset peer that must fail the writes and close the
    /// channel, never raise SIGPIPE (which would end this test process: it did with writev). The loops ignore
    /// SIGPIPE as a second line; the signal's default is restored here so that the test sees the first.
    func testWritingSeveralBuffersToAResetPeerFailsTheWritesAndClosesTheChannel() throws {
        let previous = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, previous) }
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        XCTAssertTrue(bound)
        XCTAssertEqual(Glibc.listen(listener, 4), 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let collector = Collector()
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let client = try EpollConnector.connect(to: [target], on: group.loops[0], timeout: .seconds(5)) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
        }.wait()
        let peer = accept(listener, nil, nil)
        XCTAssertGreaterThanOrEqual(peer, 0)
        let writes = try client.eventLoop.submit { () -> [EventLoopFuture<Void>] in
            // Reset the peer and write before the loop can see the reset: the writes meet it.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(peer, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            Glibc.close(peer)
            // A direct send (as the relay's DirectSocketWriter makes) meets the reset first; the channel's writes
            // then meet EPIPE, which raises SIGPIPE unless suppressed.
            var byte: UInt8 = 0
            _ = Glibc.send((client as! EpollSocketChannel).descriptor, &byte, 1, CInt(MSG_NOSIGNAL))
            let futures = (0..<3).map { _ in client.write(ByteBuffer(repeating: 9, count: 1000)) }
            client.flush()
            return futures
        }.wait()
        for future in writes { XCTAssertThrowsError(try future.wait()) }
        try client.closeFuture.wait()
        XCTAssertEqual(collector.events.withLockedValue { $0 }, ["active", "inactive"])
    }

    func testResolvingANumericAddressNeedsNoLookupAndLocalhostResolves() throws {
        XCTAssertEqual(try EpollConnector.resolve(host: "127.0.0.1", port: 5432).map(\.port), [5432])
        let localhost = try EpollConnector.resolve(host: "localhost", port: 6432)
        XCTAssertFalse(localhost.isEmpty)
        XCTAssertTrue(localhost.allSatisfy { $0.port == 6432 })
        XCTAssertThrowsError(try EpollConnector.resolve(host: "no-such-host.invalid", port: 1))
    }
}
#endif
