/// Reading the 5-byte header (`id`, `Int32` length) of a regular protocol message without consuming it.
import NIOCore

public struct FrameHeader: Sendable, Equatable {
    public var id: UInt8
    /// Length field: counts itself (4) and the payload.
    public var length: Int

    public init(id: UInt8, length: Int) {
        self.id = id
        self.length = length
    }

    /// Total bytes on the wire: id byte + length field + payload.
    @inlinable public var frameSize: Int { length + 1 }
    @inlinable public var payloadSize: Int { length - 4 }

    public static let size = 5

    /// Peeks a header at `index`; nil if fewer than 5 bytes are readable there.
    @inlinable
    public static func peek(_ buffer: ByteBuffer, at index: Int) -> FrameHeader? {
        guard let (id, length) = buffer.getMultipleIntegers(at: index, as: (UInt8, Int32).self) else { return nil }
        return FrameHeader(id: id, length: Int(length))
    }

    /// Validates the length field against the protocol minimum and `limit`.
    @inlinable
    public func validate(limit: Int) throws(WireError) {
        if length < 4 { throw WireError(.invalidLength(length)) }
        if length > limit { throw WireError(.messageTooLarge(length: length, limit: limit)) }
    }
}

/// A whole message: identifier and payload (without the length field).
public struct Frame: Sendable, Equatable {
    public var id: UInt8
    public var payload: ByteBuffer

    public init(id: UInt8, payload: ByteBuffer) {
        self.id = id
        self.payload = payload
    }

    /// Splits the first complete frame off `buffer`; nil when incomplete (nothing consumed).
    public static func read(from buffer: inout ByteBuffer, limit: Int = Int(Int32.max)) throws(WireError) -> Frame? {
        guard let header = FrameHeader.peek(buffer, at: buffer.readerIndex) else { return nil }
        try header.validate(limit: limit)
        guard buffer.readableBytes >= header.frameSize else { return nil }
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        let payload = buffer.readSlice(length: header.payloadSize)!
        return Frame(id: header.id, payload: payload)
    }
}
