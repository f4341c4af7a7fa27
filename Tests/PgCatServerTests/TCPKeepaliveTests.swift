#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import XCTest
import EpollTransport
@testable import PgCatServer

#if os(Linux)  // TCP_KEEPIDLE and the others are set on Linux only
/// The socket options of client and server connections, set in an initializer (the listener's path) and from
/// another thread (hopping to the channel's loop), on real loopback sockets.
final class TCPKeepaliveTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private let settings = TCPKeepalive(idle: 7, interval: 3, count: 4, userTimeout: 9000)

    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 1) }
    override func tearDown() { try? group.syncShutdownGracefully() }

    private func tcp(_ name: CInt) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }

    private func assertOptions(_ channel: Channel, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertNotEqual(try channel.getOption(ChannelOptions.tcpOption(.tcp_nodelay)).wait(), 0, file: file, line: line)
        XCTAssertNotEqual(try channel.getOption(ChannelOptions.socketOption(.so_keepalive)).wait(), 0, file: file, line: line)
        XCTAssertEqual(try channel.getOption(tcp(CInt(TCP_KEEPIDLE))).wait(), 7, file: file, line: line)
        XCTAssertEqual(try channel.getOption(tcp(CInt(TCP_KEEPINTVL))).wait(), 3, file: file, line: line)
        XCTAssertEqual(try channel.getOption(tcp(CInt(TCP_KEEPCNT))).wait(), 4, file: file, line: line)
        XCTAssertEqual(try channel.getOption(tcp(CInt(TCP_USER_TIMEOUT))).wait(), 9000, file: file, line: line)
    }

    /// `accepted` got the options (and a 4096-byte receive allocator) in its initializer; `connected` gets them
    /// now, from the test thread (hopping to its loop).
    private func assertAppliedOnBothSides(accepted server: Channel, connected: Channel,
                                          file: StaticString = #filePath, line: UInt = #line) throws {
        try assertOptions(server, file: file, line: line)
        let used = try server.getOption(ChannelOptions.recvAllocator).wait()
        XCTAssertEqual((used as? AdaptiveRecvByteBufferAllocator)?.maximum, 4096, file: file, line: line)
        XCTAssertNotEqual(try connected.getOption(tcp(CInt(TCP_KEEPIDLE))).wait(), 7, "not set yet", file: file, line: line)
        try settings.apply(to: connected).wait()
        try assertOptions(connected, file: file, line: line)
    }

    func testOptionsSetInTheInitializerAndFromAnotherThread() throws {
        let settings = self.settings
        let accepted = group.next().makePromise(of: Channel.self)
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 128, maximum: 4096)
        let listener = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                settings.apply(to: channel, recvAllocator: allocator).map { accepted.succeed(channel) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let connected = try ClientBootstrap(group: group).connect(to: listener.localAddress!).wait()
        defer { try? connected.close().wait() }
        let server = try accepted.futureResult.wait()

        try assertAppliedOnBothSides(accepted: server, connected: connected)
    }

    func testZeroLeavesTheKernelDefault() throws {
        let connectedDefault = try pairedClient()
        let before = try connectedDefault.getOption(tcp(CInt(TCP_KEEPIDLE))).wait()
        try TCPKeepalive(idle: 0, interval: 0, count: 0, userTimeout: 0).apply(to: connectedDefault).wait()
        XCTAssertEqual(try connectedDefault.getOption(tcp(CInt(TCP_KEEPIDLE))).wait(), before)
        XCTAssertNotEqual(try connectedDefault.getOption(ChannelOptions.socketOption(.so_keepalive)).wait(), 0)
    }

    /// pgcat's own channels take the options straight through setsockopt(2): the same values must arrive.
    func testOptionsOnPgCatsOwnChannels() throws {
        let epoll = try EpollEventLoopGroup(numberOfThreads: 1, name: "keepalive-test")
        defer { try? epoll.syncShutdownGracefully() }
        let settings = self.settings
        let accepted = epoll.loops[0].makePromise(of: Channel.self)
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 128, maximum: 4096)
        let listener = try EpollListener.bind(host: "127.0.0.1", port: 0, backlog: 16, group: epoll) { channel in
            settings.apply(to: channel, recvAllocator: allocator).map { accepted.succeed(channel) }
        }.wait()
        defer { _ = try? listener.close().wait() }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: listener.localAddress!.port!)
        let connected = try EpollConnector.connect(to: [address], on: epoll.loops[0], timeout: .seconds(5)) {
            $0.eventLoop.makeSucceededVoidFuture()
        }.wait()
        defer { _ = try? connected.close().wait() }
        let server = try accepted.futureResult.wait()
        XCTAssertTrue(server is EpollSocketChannel)

        try assertAppliedOnBothSides(accepted: server, connected: connected)

        let before = try connected.getOption(tcp(CInt(TCP_KEEPCNT))).wait()
        try TCPKeepalive(idle: 0, interval: 0, count: 0, userTimeout: 0).apply(to: connected).wait()
        XCTAssertEqual(try connected.getOption(tcp(CInt(TCP_KEEPCNT))).wait(), before, "0 leaves the value alone")
    }

    func testOnlyNonZeroSettingsBecomeOptions() {
        XCTAssertEqual(TCPKeepalive(idle: 0, interval: 0, count: 0, userTimeout: 0).keepaliveOptions,
                       [.init(level: SOL_SOCKET, name: SO_KEEPALIVE, value: 1)])
        XCTAssertEqual(TCPKeepalive(idle: 5, interval: 0, count: 2, userTimeout: 0).keepaliveOptions.map(\.name),
                       [SO_KEEPALIVE, CInt(TCP_KEEPIDLE), CInt(TCP_KEEPCNT)])
    }

    private func pairedClient() throws -> Channel {
        let listener = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        addTeardownBlock { try? listener.close().wait() }
        let connected = try ClientBootstrap(group: group).connect(to: listener.localAddress!).wait()
        addTeardownBlock { try? connected.close().wait() }
        return connected
    }
}
#endif
