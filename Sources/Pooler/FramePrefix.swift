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

/// Which prepared statement a frame names: the relay reads it once per frame for the prepared-statement rewrite
/// (named) and the unnamed statement's tracking (unnamed).
enum StatementReference: Equatable {
    /// Not a Parse, Bind, or Describe/Close of a statement.
    case none
    case named
    case unnamed
    /// The name's first bytes have not all arrived.
    case undecided

    init(_ header: FrameHeader, in buffer: ByteBuffer, at index: Int) {
        switch header.id {
        case FrontendID.parse, FrontendID.bind, FrontendID.describe, FrontendID.close: break
        default:
            self = .none  // (most frames: Execute, Sync, ... read nothing)
            return
        }
        let prefix = FramePrefix(header, in: buffer, at: index)
        var nameStart = 0
        switch header.id {
        case FrontendID.bind:
            while let b = prefix[nameStart], b != 0 { nameStart += 1 }  // the portal name, then the statement's
            guard prefix[nameStart] == 0 else {
                self = .undecided
                return
            }
            nameStart += 1
        case FrontendID.describe, FrontendID.close:
            guard let kind = prefix[0] else {
                self = .undecided
                return
            }
            guard kind == UInt8(ascii: "S") else {
                self = .none  // a portal
                return
            }
            nameStart = 1
        default:
            break  // Parse: the name comes first
        }
        guard let first = prefix[nameStart] else {
            self = .undecided
            return
        }
        self = first == 0 ? .unnamed : .named
    }
}

extension ByteBuffer {
    /// Reads a Describe or Close payload: the statement's name ("" for the unnamed one), or nil when it names a
    /// portal (or is cut short).
    mutating func readStatementName() -> String? {
        guard readInteger(as: UInt8.self) == UInt8(ascii: "S") else { return nil }
        return readNullTerminatedString()
    }
}
