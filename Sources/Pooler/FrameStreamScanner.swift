/// Walks a byte stream of protocol frames without copying: whole frames are inspected only when asked for,
/// everything else streams through as slices, and an incomplete tail is carried to the next read.
import NIOCore
import PostgresWire

struct FrameStreamScanner {
    /// Bytes of a passthrough frame still to come in later reads.
    private(set) var skip = 0
    /// Incomplete header or inspected frame kept from the previous read.
    private var carry: ByteBuffer?

    enum Decision {
        /// Forward this frame untouched (it may be streamed across reads).
        case passThrough
        /// The frame must be complete before `frame` is called.
        case inspect
        /// Stop before this frame: it is left (with everything after it) for `remainder`.
        case stop
    }

    /// True while a frame is only partly forwarded.
    var isMidFrame: Bool { skip > 0 }

    /// Prepends any carried bytes to `incoming`.
    mutating func merge(_ incoming: ByteBuffer) -> ByteBuffer {
        guard var carried = carry else { return incoming }
        carry = nil
        var incoming = incoming
        carried.writeBuffer(&incoming)
        return carried
    }

    /// Keeps unconsumed bytes for the next read.
    mutating func keep(_ remainder: ByteBuffer) {
        if remainder.readableBytes > 0 { carry = remainder }
    }

    /// Passes over up to `available` bytes of a frame being streamed; returns how many were passed.
    mutating func consumeSkip(available: Int) -> Int {
        let n = min(skip, available)
        skip -= n
        return n
    }

    /// The current frame continues for `remaining` bytes beyond this read.
    mutating func startSkip(_ remaining: Int) {
        skip = remaining
    }

    mutating func reset() {
        skip = 0
        carry = nil
    }

    /// Scans frames from the reader index of `buffer`. `classify` is asked for each header; `frame` gets each
    /// complete inspected frame and returns false to stop after it. Returns the number of bytes that may be
    /// forwarded (from the reader index); the caller slices them off and keeps the rest.
    mutating func scan(
        _ buffer: ByteBuffer,
        limit: Int,
        classify: (FrameHeader) throws(WireError) -> Decision,
        frame: (FrameHeader, ByteBuffer) throws(WireError) -> Bool
    ) throws(WireError) -> Int {
        let start = buffer.readerIndex
        let end = buffer.writerIndex
        var index = start
        while index < end {
            if skip > 0 {
                let n = min(skip, end - index)
                skip -= n
                index += n
                continue
            }
            guard let header = FrameHeader.peek(buffer, at: index) else { break }
            try header.validate(limit: limit)
            switch try classify(header) {
            case .stop:
                return index - start
            case .passThrough:
                let available = end - index
                if available >= header.frameSize {
                    index += header.frameSize
                } else {
                    skip = header.frameSize - available
                    index = end
                }
            case .inspect:
                guard end - index >= header.frameSize else { return index - start }
                let payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
                index += header.frameSize
                if try !frame(header, payload) { return index - start }
            }
        }
        return index - start
    }
}
