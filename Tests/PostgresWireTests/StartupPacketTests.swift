/// StartupPacket.decode: every startup-phase packet, whole and byte by byte, and every way it can be wrong.

import NIOCore
import PostgresWire
import XCTest

final class StartupPacketTests: XCTestCase {
    let parameters = [("user", "alice"), ("database", "app"), ("application_name", "psql"), ("options", "-c search_path=a,b")]

    func startupBytes(_ parameters: [(String, String)]) -> [UInt8] {
        readableBytes(encoded { MessageEncoder.startupMessage(parameters: parameters, into: &$0) })
    }

    /// A raw packet: length, code, then `body`.
    func packet(code: Int32, body: [UInt8] = [], length: Int32? = nil) -> ByteBuffer {
        encoded {
            $0.writeInteger(length ?? Int32(8 + body.count))
            $0.writeInteger(code)
            $0.writeBytes(body)
        }
    }

    func decode(_ buffer: ByteBuffer) throws(WireError) -> StartupPacket? {
        var buffer = buffer
        return try StartupPacket.decode(from: &buffer)
    }

    // MARK: round trips

    func testStartupMessageRoundTrip() throws {
        var stream = buffer(startupBytes(parameters))
        XCTAssertEqual(try StartupPacket.decode(from: &stream), .startup(parameters: parameters))
        XCTAssertEqual(stream.readableBytes, 0)
    }

    func testStartupMessageWithoutParameters() throws {
        XCTAssertEqual(try decode(buffer(startupBytes([]))), .startup(parameters: []))
    }

    func testStartupMessageKeepsNonASCIIAndEmptyValues() throws {
        let parameters = [("user", "jürgen"), ("database", "日本"), ("application_name", "")]
        XCTAssertEqual(try decode(buffer(startupBytes(parameters))), .startup(parameters: parameters))
    }

    func testStartupParameterOrderMatters() throws {
        let decoded = try decode(buffer(startupBytes(parameters)))
        XCTAssertNotEqual(decoded, .startup(parameters: parameters.reversed()))
        XCTAssertNotEqual(decoded, .startup(parameters: Array(parameters.dropLast())))
    }

    func testSSLRequestRoundTrip() throws {
        XCTAssertEqual(try decode(encoded { MessageEncoder.sslRequest(into: &$0) }), .sslRequest)
    }

    func testGSSENCRequest() throws {
        XCTAssertEqual(try decode(packet(code: ProtocolCode.gssEncRequest)), .gssEncRequest)
    }

    func testCancelRequestRoundTrip() throws {
        for key in [BackendKeyData(processID: 4242, secretKey: -17), BackendKeyData(processID: .max, secretKey: .min)] {
            let bytes = encoded { MessageEncoder.cancelRequest(key, into: &$0) }
            XCTAssertEqual(bytes.readableBytes, 16)
            XCTAssertEqual(try decode(bytes), .cancel(processID: key.processID, secretKey: key.secretKey))
        }
    }

    func testDecodeConsumesOnlyItsPacket() throws {
        // Whatever follows a packet (a client that does not wait for the answer) stays for the next decode.
        var stream = encoded { MessageEncoder.sslRequest(into: &$0) }
        stream.writeBytes(startupBytes(parameters))
        XCTAssertEqual(try StartupPacket.decode(from: &stream), .sslRequest)
        XCTAssertEqual(try StartupPacket.decode(from: &stream), .startup(parameters: parameters))
        XCTAssertEqual(try StartupPacket.decode(from: &stream), nil)
    }

    // MARK: byte by byte

    func testEveryPacketByteByByte() throws {
        let cases: [(ByteBuffer, StartupPacket)] = [
            (buffer(startupBytes(parameters)), .startup(parameters: parameters)),
            (encoded { MessageEncoder.sslRequest(into: &$0) }, .sslRequest),
            (packet(code: ProtocolCode.gssEncRequest), .gssEncRequest),
            (encoded { MessageEncoder.cancelRequest(BackendKeyData(processID: 1, secretKey: 2), into: &$0) },
             .cancel(processID: 1, secretKey: 2)),
        ]
        for (bytes, expected) in cases {
            let decoded = try decodeByteByByte(readableBytes(bytes)) { (buffer: inout ByteBuffer) throws(WireError) in
                try StartupPacket.decode(from: &buffer)
            }
            XCTAssertEqual(decoded, expected)
        }
    }

    // MARK: truncated input

    func testEveryTruncationReturnsNilAndConsumesNothing() throws {
        let bytes = startupBytes(parameters)
        for count in 0..<bytes.count {
            var prefix = buffer(Array(bytes.prefix(count)))
            XCTAssertNil(try StartupPacket.decode(from: &prefix), "prefix of \(count) bytes")
            XCTAssertEqual(prefix.readableBytes, count)
        }
    }

    // MARK: lengths

    func testLengthBelowEightThrowsInvalidLength() {
        for length: Int32 in [-1, 0, 3, 4, 7, .min] {
            assertWireError(.invalidLength(Int(length))) { () throws(WireError) in
                try decode(packet(code: ProtocolCode.sslRequest, length: length))
            }
        }
    }

    func testInvalidLengthIsRejectedBeforeTheRestArrives() {
        // Only the length field has arrived: no need to wait for more to know it is wrong.
        assertWireError(.invalidLength(5)) { () throws(WireError) in try decode(buffer([0, 0, 0, 5])) }
    }

    func testLengthAboveTenThousandThrowsMessageTooLarge() {
        for length: Int32 in [10_001, 1 << 20, .max] {
            assertWireError(.messageTooLarge(length: Int(length), limit: 10_000)) { () throws(WireError) in
                // Only the header: the limit is enforced before buffering the body.
                try decode(packet(code: ProtocolCode.protocolVersion3, length: length))
            }
        }
    }

    func testPacketOfExactlyTenThousandBytesIsAccepted() throws {
        // 4 length + 4 code + "user\0" (5) + value + "\0" (1) + final "\0" (1)
        let value = String(repeating: "x", count: 10_000 - 15)
        let bytes = startupBytes([("user", value)])
        XCTAssertEqual(bytes.count, ProtocolCode.maxStartupPacketLength)
        XCTAssertEqual(try decode(buffer(bytes)), .startup(parameters: [("user", value)]))
    }

    func testUnsupportedProtocolVersions() {
        let versions: [(major: Int32, minor: Int32)] = [(2, 0), (1, 0), (4, 0), (1234, 5677)]
        for version in versions {
            assertWireError(.unsupportedProtocol(major: Int(version.major), minor: Int(version.minor))) { () throws(WireError) in
                try decode(packet(code: version.major << 16 | version.minor, body: [0]))
            }
        }
    }

    func testNewerMinorVersionOfProtocol3IsAcceptedForNegotiation() throws {
        let bytes = startupBytes([("user", "u")])
        var patched = bytes
        patched[7] = 2  // protocol 3.2
        XCTAssertEqual(try decode(buffer(patched)), .startupNewerMinor(minor: 2, parameters: [("user", "u")]))
    }

    // MARK: malformed bodies

    func testCancelRequestTooShortIsMalformed() {
        assertMalformed { () throws(WireError) in try decode(packet(code: ProtocolCode.cancelRequest)) }
        assertMalformed { () throws(WireError) in try decode(packet(code: ProtocolCode.cancelRequest, body: [0, 0, 0, 1])) }
        assertMalformed { () throws(WireError) in try decode(packet(code: ProtocolCode.cancelRequest, body: [0, 0, 0, 1, 0, 0, 2])) }
    }

    func testStartupParametersWithoutTerminatorAreMalformed() {
        assertMalformed { () throws(WireError) in try decode(packet(code: ProtocolCode.protocolVersion3)) }
        assertMalformed { () throws(WireError) in
            try decode(packet(code: ProtocolCode.protocolVersion3, body: Array("user\0alice\0".utf8)))
        }
        assertMalformed { () throws(WireError) in
            try decode(packet(code: ProtocolCode.protocolVersion3, body: Array("user".utf8)))
        }
    }

    func testStartupParameterWithoutValueIsMalformed() {
        assertMalformed { () throws(WireError) in
            try decode(packet(code: ProtocolCode.protocolVersion3, body: Array("user\0".utf8)))
        }
        assertMalformed { () throws(WireError) in
            try decode(packet(code: ProtocolCode.protocolVersion3, body: Array("user\0alice\0database".utf8)))
        }
    }

    func testWireErrorDescriptionsNameTheProblem() {
        XCTAssertEqual("\(WireError(.invalidLength(3)))", "invalid message length 3")
        XCTAssertEqual("\(WireError(.messageTooLarge(length: 10_001, limit: 10_000)))",
                       "message of 10001 bytes exceeds the limit of 10000 bytes")
        XCTAssertEqual("\(WireError(.unsupportedProtocol(major: 2, minor: 0)))",
                       "unsupported frontend protocol 2.0: server supports 3.0")
        XCTAssertEqual("\(WireError(.unexpectedMessage(UInt8(ascii: "Q"))))", "unexpected message type \"Q\" (81)")
        XCTAssertEqual("\(WireError(.unexpectedMessage(0)))", "unexpected message type 0", "no NUL in an error text")
        XCTAssertEqual("\(WireError.malformed("x"))", "malformed message: x")
    }
}
