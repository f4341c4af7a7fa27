/// Helpers for the codec tests: building buffers, feeding decoders byte by byte, asserting typed wire errors.

import NIOCore
import PostgresWire
import XCTest

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    return buffer
}

/// Runs an encoder into a fresh buffer.
func encoded(_ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: 64)
    body(&buffer)
    return buffer
}

func readableBytes(_ buffer: ByteBuffer) -> [UInt8] {
    buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
}

/// Reads exactly one frame that fills the whole buffer.
func onlyFrame(_ buffer: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) throws -> Frame {
    var buffer = buffer
    let frame = try XCTUnwrap(try Frame.read(from: &buffer), "incomplete frame", file: file, line: line)
    XCTAssertEqual(buffer.readableBytes, 0, "bytes left after the frame", file: file, line: line)
    return frame
}

/// Asserts that `body` throws a `WireError` of exactly `kind`.
func assertWireError<T>(
    _ kind: WireError.Kind, file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws(WireError) -> T
) {
    do {
        let value = try body()
        XCTFail("expected \(kind), got \(value)", file: file, line: line)
    } catch {
        XCTAssertEqual(error.kind, kind, file: file, line: line)
    }
}

/// Asserts that `body` throws `WireError.malformed` (any text).
func assertMalformed<T>(file: StaticString = #filePath, line: UInt = #line, _ body: () throws(WireError) -> T) {
    do {
        let value = try body()
        XCTFail("expected a malformed error, got \(value)", file: file, line: line)
    } catch {
        guard case .malformed = error.kind else {
            return XCTFail("expected a malformed error, got \(error)", file: file, line: line)
        }
    }
}

/// Feeds `bytes` to `decode` one byte at a time, the way a socket might deliver them: every call before the
/// last byte must return nil and consume nothing; the call with the last byte must decode and consume it all.
func decodeByteByByte<T>(
    _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
    _ decode: (inout ByteBuffer) throws(WireError) -> T?
) throws -> T? {
    var stream = ByteBufferAllocator().buffer(capacity: bytes.count)
    for (offset, byte) in bytes.enumerated() {
        stream.writeInteger(byte)
        let before = stream.readerIndex
        let result = try decode(&stream)
        if offset < bytes.count - 1 {
            XCTAssertNil(result, "decoded early, at byte \(offset + 1) of \(bytes.count)", file: file, line: line)
            XCTAssertEqual(stream.readerIndex, before, "consumed bytes of an incomplete message", file: file, line: line)
            if result != nil { return nil }
        } else {
            XCTAssertEqual(stream.readableBytes, 0, "bytes left after the last one", file: file, line: line)
            return result
        }
    }
    return nil
}

/// SplitMix64: deterministic, so a fuzz failure reproduces from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
