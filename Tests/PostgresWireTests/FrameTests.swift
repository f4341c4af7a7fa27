/// Frame.read and FrameHeader: splitting a stream into frames, whole and byte by byte, and the length checks.

import NIOCore
import PostgresWire
import XCTest

final class FrameTests: XCTestCase {
    func rawFrame(_ id: Character, length: Int32, payload: [UInt8] = []) -> ByteBuffer {
        encoded {
            $0.writeInteger(UInt8(ascii: id.unicodeScalars.first!))
            $0.writeInteger(length)
            $0.writeBytes(payload)
        }
    }

    // MARK: FrameHeader

    func testPeekNeedsFiveBytesAndConsumesNothing() {
        let bytes = readableBytes(rawFrame("Q", length: 9, payload: [1, 2, 3, 4, 5]))
        for count in 0..<5 {
            XCTAssertNil(FrameHeader.peek(buffer(Array(bytes.prefix(count))), at: 0), "\(count) bytes")
        }
        let whole = buffer(bytes)
        let header = FrameHeader.peek(whole, at: whole.readerIndex)
        XCTAssertEqual(header, FrameHeader(id: UInt8(ascii: "Q"), length: 9))
        XCTAssertEqual(header?.frameSize, 10)
        XCTAssertEqual(header?.payloadSize, 5)
        XCTAssertEqual(whole.readableBytes, 10)
    }

    func testPeekAtAnOffset() {
        var stream = encoded { MessageEncoder.sync(into: &$0) }
        MessageEncoder.query("SELECT 1", into: &stream)
        XCTAssertEqual(FrameHeader.peek(stream, at: stream.readerIndex + 5), FrameHeader(id: UInt8(ascii: "Q"), length: 13))
        XCTAssertNil(FrameHeader.peek(stream, at: stream.writerIndex - 4))
    }

    func testValidate() {
        XCTAssertNoThrow(try FrameHeader(id: 0, length: 4).validate(limit: 4))
        XCTAssertNoThrow(try FrameHeader(id: 0, length: 100).validate(limit: 100))
        assertWireError(.invalidLength(3)) { () throws(WireError) in try FrameHeader(id: 0, length: 3).validate(limit: 100) }
        assertWireError(.invalidLength(-1)) { () throws(WireError) in try FrameHeader(id: 0, length: -1).validate(limit: 100) }
        assertWireError(.messageTooLarge(length: 101, limit: 100)) { () throws(WireError) in
            try FrameHeader(id: 0, length: 101).validate(limit: 100)
        }
    }

    // MARK: Frame.read

    func testReadsConsecutiveFramesThenNil() throws {
        var stream = encoded { MessageEncoder.query("SELECT 1", into: &$0) }
        MessageEncoder.sync(into: &stream)
        MessageEncoder.readyForQuery(.idle, into: &stream)

        let query = try XCTUnwrap(try Frame.read(from: &stream))
        XCTAssertEqual(query.id, FrontendID.query)
        XCTAssertEqual(readableBytes(query.payload), Array("SELECT 1\0".utf8))
        XCTAssertEqual(try Frame.read(from: &stream), Frame(id: FrontendID.sync, payload: buffer([])))
        XCTAssertEqual(try Frame.read(from: &stream), Frame(id: BackendID.readyForQuery, payload: buffer([UInt8(ascii: "I")])))
        XCTAssertNil(try Frame.read(from: &stream))
    }

    func testEmptyPayloadFrame() throws {
        let frame = try onlyFrame(rawFrame("S", length: 4))
        XCTAssertEqual(frame.payload.readableBytes, 0)
    }

    func testByteByByte() throws {
        let bytes = readableBytes(encoded { MessageEncoder.errorResponse(severity: .fatal, state: .adminShutdown, message: "bye", into: &$0) })
        let frame = try decodeByteByByte(bytes) { (buffer: inout ByteBuffer) throws(WireError) in try Frame.read(from: &buffer) }
        XCTAssertEqual(frame?.id, BackendID.errorResponse)
        XCTAssertEqual(frame?.payload.readableBytes, bytes.count - 5)
    }

    func testEveryTruncationReturnsNilAndConsumesNothing() throws {
        let bytes = readableBytes(encoded { MessageEncoder.parameterStatus("TimeZone", "UTC", into: &$0) })
        for count in 0..<bytes.count {
            var prefix = buffer(Array(bytes.prefix(count)))
            XCTAssertNil(try Frame.read(from: &prefix), "prefix of \(count) bytes")
            XCTAssertEqual(prefix.readableBytes, count)
        }
    }

    func testLengthBelowFourThrows() {
        for length: Int32 in [3, 0, -1, .min] {
            assertWireError(.invalidLength(Int(length))) { () throws(WireError) in
                var stream = rawFrame("Q", length: length, payload: [0, 0, 0, 0])
                return try Frame.read(from: &stream)
            }
        }
    }

    func testOversizeFrameThrowsAsSoonAsTheHeaderArrives() {
        assertWireError(.messageTooLarge(length: 1025, limit: 1024)) { () throws(WireError) in
            var stream = rawFrame("d", length: 1025)
            return try Frame.read(from: &stream, limit: 1024)
        }
    }

    func testFrameAtTheLimitIsRead() throws {
        var stream = rawFrame("d", length: 1024, payload: Array(repeating: 7, count: 1020))
        let frame = try XCTUnwrap(try Frame.read(from: &stream, limit: 1024))
        XCTAssertEqual(frame.payload.readableBytes, 1020)
    }

    func testHugeLengthWithinTheDefaultLimitWaitsWithoutCrashing() throws {
        var stream = rawFrame("d", length: .max, payload: [1, 2, 3])
        XCTAssertNil(try Frame.read(from: &stream))
        XCTAssertEqual(stream.readableBytes, 8)
    }

    func testPayloadIsASliceOfTheFrame() throws {
        var stream = encoded { MessageEncoder.commandComplete("SELECT 1", into: &$0) }
        MessageEncoder.commandComplete("INSERT 0 5", into: &stream)
        _ = try Frame.read(from: &stream)
        let second = try XCTUnwrap(try Frame.read(from: &stream))
        var payload = second.payload
        XCTAssertEqual(payload.readNullTerminatedString(), "INSERT 0 5")
        XCTAssertEqual(payload.readableBytes, 0)
    }
}
