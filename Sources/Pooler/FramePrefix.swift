/// The bytes of a frame's payload that have arrived so far, read one at a time without copying: enough to tell a
/// named from an unnamed statement before the whole frame is in.
import NIOCore
import PostgresWire

struct FramePrefix {
    private let buffer: ByteBuffer
    private let payload: Int
    private let available: Int

    init(_ header: FrameHeader, in buffer: ByteBuffer, at index: Int) {
        self.buffer = buffer
        self.payload = index + FrameHeader.size
        self.available = min(header.payloadSize, buffer.writerIndex - payload)
    }

    /// The payload byte at `offset`, or nil when it has not arrived (or lies beyond the payload).
    @inline(__always)
    subscript(offset: Int) -> UInt8? {
        offset < available ? buffer.getInteger(at: payload + offset, as: UInt8.self) : nil
    }

    /// How many payload bytes have arrived.
    var count: Int { max(0, available) }

    /// The payload so far.
    var slice: ByteBuffer { buffer.getSlice(at: payload, length: count)! }
}
