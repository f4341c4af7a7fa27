#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import NIOSSL
import XCTest
@testable import PgCatServer
#if os(Linux)
import EpollTransport
#endif

/// The descriptor lookup reads NIO internals by reflection: these tests fail if a NIO upgrade moves them (the relay
/// would then quietly fall back to NIO's write path) or if the lookup ever answered for a channel it must not.
final class ChannelDescriptorTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 1) }
    override func tearDown() { try? group.syncShutdownGracefully() }

    /// A loopback TCP pair: the accepted (server side) channel and the connected one.
    private func connectedPair() throws -> (accepted: Channel, connected: Channel) {
        let accepted = group.next().makePromise(of: Channel.self)
        let listener = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.succeed(channel)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        addTeardownBlock { try? listener.close().wait() }
        let connected = try ClientBootstrap(group: group).connect(to: listener.localAddress!).wait()
        addTeardownBlock { try? connected.close().wait() }
        return (try accepted.futureResult.wait(), connected)
    }

    private func lookup(_ channel: Channel) throws -> CInt? {
        try channel.eventLoop.submit { ChannelDescriptor.plaintextTCP(channel) }.wait()
    }

    /// The peer port `descriptor` is connected to.
    private func peerPort(_ descriptor: CInt) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) == 0 }
        }
        return ok ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    func testFindsTheDescriptorOfAcceptedAndConnectedChannels() throws {
        let (accepted, connected) = try connectedPair()
        let acceptedDescriptor = try XCTUnwrap(try lookup(accepted), "NIO's socket layout was not recognised")
        let connectedDescriptor = try XCTUnwrap(try lookup(connected))
        XCTAssertNotEqual(acceptedDescriptor, connectedDescriptor)
        XCTAssertEqual(peerPort(acceptedDescriptor), connected.localAddress?.port)
        XCTAssertEqual(peerPort(connectedDescriptor), accepted.localAddress?.port)
    }

    func testNoDescriptorWithTLSInThePipeline() throws {
        let (_, connected) = try connectedPair()
        let context = try NIOSSLContext(configuration: .makeClientConfiguration())
        try connected.eventLoop.submit {
            try connected.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil),
                                                             position: .first)
        }.wait()
        XCTAssertNil(try lookup(connected), "TLS bytes must go through the TLS handler")
    }

    func testNoDescriptorOffTheEventLoopOrAfterClose() throws {
        let (accepted, _) = try connectedPair()
        XCTAssertNil(ChannelDescriptor.plaintextTCP(accepted), "called off the channel's loop")
        try accepted.close().wait()
        XCTAssertNil(try lookup(accepted))
    }

    #if os(Linux)
    /// pgcat's own channels give their descriptor out, under the same conditions (on the loop, open, no TLS).
    func testPgcatsOwnChannelsGiveTheirDescriptorUnderTheSameConditions() throws {
        let epoll = try EpollEventLoopGroup(numberOfThreads: 1, name: "test-descriptor")
        defer { try? epoll.syncShutdownGracefully() }
        let listener = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        addTeardownBlock { try? listener.close().wait() }
        let channel = try EpollConnector.connect(to: [listener.localAddress!], on: epoll.loops[0], timeout: .seconds(5)) {
            $0.eventLoop.makeSucceededVoidFuture()
        }.wait()
        let descriptor = try XCTUnwrap(try lookup(channel))
        XCTAssertEqual(descriptor, (channel as? EpollSocketChannel)?.descriptor)
        XCTAssertEqual(peerPort(descriptor), listener.localAddress?.port)
        XCTAssertNil(ChannelDescriptor.plaintextTCP(channel), "called off the channel's loop")
        let context = try NIOSSLContext(configuration: .makeClientConfiguration())
        try channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
        }.wait()
        XCTAssertNil(try lookup(channel), "TLS bytes must go through the TLS handler")
        try channel.close().wait()
        XCTAssertNil(try lookup(channel))
    }
    #endif
}
