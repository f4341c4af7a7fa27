#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import XCTest
@testable import Pooler

/// DirectSocketWriter against a real socket pair (the direct side) and an EmbeddedChannel (NIO's side): bytes arrive
/// once and in order whichever way they went.
final class DirectSocketWriterTests: XCTestCase {
    private final class ContextKeeper: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var context: ChannelHandlerContext?
        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    }

    /// Holds writes on their way to the channel while `holding` (NIO that has not written them yet).
    private final class WriteHolder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var holding = false
        var held: [(NIOAny, EventLoopPromise<Void>?)] = []
        var context: ChannelHandlerContext?
        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if holding { held.append((data, promise)) } else { context.write(data, promise: promise) }
        }
        /// Passes on the oldest held write only, and flushes it.
        func releaseFirst() {
            let (data, promise) = held.removeFirst()
            context!.write(data, promise: promise)
            context!.flush()
        }
        func release() {
            holding = false
            for (data, promise) in held { context!.write(data, promise: promise) }
            held.removeAll()
            context!.flush()
        }
    }

    private var sockets: [CInt] = [-1, -1]
    private var holder: WriteHolder!
    private var channel: EmbeddedChannel!
    private var context: ChannelHandlerContext!

    override func setUpWithError() throws {
        XCTAssertEqual(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0, &sockets), 0)
        let keeper = ContextKeeper()
        holder = WriteHolder()
        channel = EmbeddedChannel(handlers: [holder, keeper])
        context = keeper.context
    }

    override func tearDownWithError() throws {
        close(sockets[0])
        close(sockets[1])
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    private func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// Everything readable on the far end of the socket pair now.
    private func readSocket() -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(sockets[1], &chunk, chunk.count)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }

    /// Everything the EmbeddedChannel was asked to write, in order.
    private func readNIO() throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    func testWithoutDescriptorEverythingGoesThroughNIO() throws {
        let writer = DirectSocketWriter()
        writer.write(buffer("abc"), context: context)
        writer.write(buffer("def"), context: context)
        XCTAssertEqual(try readNIO(), [], "nothing is written before the flush")
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "abcdef")
        XCTAssertEqual(readSocket(), [])
        XCTAssertFalse(writer.isDirect)
    }

    /// Callers skip flushes when `needsFlush` is false, so it must be true whenever a flush would send something,
    /// on either path.
    func testNeedsFlushWhileSomethingWaitsOnEitherPath() throws {
        let writer = DirectSocketWriter()
        XCTAssertFalse(writer.needsFlush)
        writer.write(buffer("nio"), context: context)
        XCTAssertTrue(writer.needsFlush, "a write handed to NIO still needs NIO's flush")
        writer.flush(context: context)
        XCTAssertFalse(writer.needsFlush)
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "nio")

        writer.start(descriptor: sockets[0], context: context)
        XCTAssertFalse(writer.needsFlush, "start flushes what NIO held")
        writer.write(buffer("direct"), context: context)
        XCTAssertTrue(writer.needsFlush, "a queued direct write")
        writer.flush(context: context)
        XCTAssertFalse(writer.needsFlush)
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "direct")
        writer.write(buffer("dropped"), context: context)
        writer.stop()
        XCTAssertFalse(writer.needsFlush, "a stopped writer holds nothing")
    }

    /// The context-free fast path takes only a first direct write; everything else is left to `write(_:context:)`,
    /// and the bytes still arrive once and in order.
    func testQueueIfFirstDirectTakesOnlyTheFirstDirectWrite() throws {
        let writer = DirectSocketWriter()
        XCTAssertFalse(writer.queueIfFirstDirect(buffer("x")), "no descriptor: NIO's path")
        XCTAssertFalse(writer.needsFlush)
        writer.start(descriptor: sockets[0], context: context)
        _ = try readNIO()
        XCTAssertTrue(writer.queueIfFirstDirect(buffer("first ")))
        XCTAssertFalse(writer.queueIfFirstDirect(buffer("second")), "something is queued already")
        writer.write(buffer("second"), context: context)
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "first second")
        writer.stop()
        XCTAssertFalse(writer.queueIfFirstDirect(buffer("late")), "a stopped writer takes nothing")
        XCTAssertFalse(writer.needsFlush)
    }

    func testStartWaitsForWhatNIOHeldThenWritesToTheSocket() throws {
        let writer = DirectSocketWriter()
        context.write(NIOAny(buffer("login")), promise: nil)  // an earlier write NIO still holds
        writer.start(descriptor: sockets[0], context: context)
        XCTAssertTrue(writer.isDirect, "the embedded channel wrote NIO's queue at the flush in start")
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "login")

        writer.write(buffer("one "), context: context)
        writer.write(buffer("two "), context: context)
        writer.write(buffer("three"), context: context)
        XCTAssertEqual(readSocket(), [], "queued until the flush")
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "one two three")
        XCTAssertEqual(try readNIO(), [], "nothing went through NIO")
    }

    func testWhatTheKernelRefusesGoesToNIOAndLaterWritesFollowIt() throws {
        var size: CInt = 4096
        XCTAssertEqual(setsockopt(sockets[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size)), 0)
        let writer = DirectSocketWriter()
        writer.start(descriptor: sockets[0], context: context)
        _ = try readNIO()
        // Hold NIO's writes pending (no flush through the pipeline completes them) by writing a lot at once.
        let big = [UInt8]((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        writer.write(ByteBuffer(bytes: big), context: context)
        writer.flush(context: context)
        let direct = readSocket()
        XCTAssertGreaterThan(direct.count, 0, "the kernel took part of it")
        XCTAssertLessThan(direct.count, big.count, "and NIO the rest")
        // The embedded channel completes NIO's writes at once, so the direct path is open again; a later write
        // must still come after everything NIO held.
        let viaNIO = try readNIO()
        XCTAssertEqual(direct + viaNIO, big)
        XCTAssertTrue(writer.isDirect)
        writer.write(buffer("tail"), context: context)
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "tail")
    }

    func testWritesGoThroughNIOUntilNIOHasWrittenWhatItHeld() throws {
        let writer = DirectSocketWriter()
        holder.holding = true
        writer.start(descriptor: sockets[0], context: context)
        XCTAssertFalse(writer.isDirect, "NIO may still hold earlier bytes")
        writer.write(buffer("first "), context: context)
        writer.flush(context: context)
        XCTAssertEqual(readSocket(), [], "the write queued behind NIO's")
        holder.release()
        XCTAssertTrue(writer.isDirect)
        writer.write(buffer("second"), context: context)
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "first ")
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "second")
    }

    func testAWriteNIOHasNotFlushedKeepsLaterWritesBehindIt() throws {
        let writer = DirectSocketWriter()
        holder.holding = true
        writer.start(descriptor: sockets[0], context: context)  // its mark is held
        writer.write(buffer("B"), context: context)  // to NIO, not flushed yet
        holder.releaseFirst()  // NIO writes the mark: everything before it is out, but B is not
        XCTAssertFalse(writer.isDirect, "B is still in NIO")
        writer.write(buffer("C"), context: context)
        writer.flush(context: context)
        holder.release()
        XCTAssertEqual(readSocket(), [])
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "BC")
        XCTAssertTrue(writer.isDirect, "the mark behind C completed")
    }

    func testAStoppedWriterNeverTouchesTheDescriptor() throws {
        let writer = DirectSocketWriter()
        writer.start(descriptor: sockets[0], context: context)
        _ = try readNIO()
        writer.write(buffer("queued "), context: context)
        writer.stop()  // the channel is closing: queued bytes are dropped, as NIO drops unflushed writes on close
        writer.write(buffer("after stop"), context: context)
        writer.flush(context: context)
        XCTAssertEqual(readSocket(), [])
        XCTAssertEqual(String(decoding: try readNIO(), as: UTF8.self), "after stop")
        XCTAssertFalse(writer.isDirect)
    }

    func testLargeRunsAreSentWithoutGrowingOneCopy() throws {
        let writer = DirectSocketWriter()
        writer.start(descriptor: sockets[0], context: context)
        _ = try readNIO()
        let chunk = String(repeating: "x", count: DirectSocketWriter.coalesceLimit - 10)
        writer.write(buffer(chunk), context: context)
        writer.write(buffer("0123456789abc"), context: context)  // over the limit: the first is sent now
        XCTAssertEqual(readSocket().count, chunk.count)
        writer.flush(context: context)
        XCTAssertEqual(String(decoding: readSocket(), as: UTF8.self), "0123456789abc")
    }
}
