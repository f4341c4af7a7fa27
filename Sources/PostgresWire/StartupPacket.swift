/// The untagged packets a client may send before the regular protocol starts.
import NIOCore

public enum StartupPacket: Sendable, Equatable {
    case startup(parameters: [(String, String)])
    /// A 3.x startup with a minor version above 0.
    case startupNewerMinor(minor: Int, parameters: [(String, String)])
    case sslRequest
    case gssEncRequest
    case cancel(processID: Int32, secretKey: Int32)

    public static func == (lhs: StartupPacket, rhs: StartupPacket) -> Bool {
        switch (lhs, rhs) {
        case (.startup(let a), .startup(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0 == $1 }
        case (.startupNewerMinor(let m1, let a), .startupNewerMinor(let m2, let b)):
            return m1 == m2 && a.count == b.count && zip(a, b).allSatisfy { $0 == $1 }
        case (.sslRequest, .sslRequest), (.gssEncRequest, .gssEncRequest):
            return true
        case (.cancel(let p1, let s1), .cancel(let p2, let s2)):
            return p1 == p2 && s1 == s2
        default:
            return false
        }
    }

    /// Decodes one startup-phase packet from the front of `buffer`.
    /// Returns nil (consuming nothing) when the packet is not complete yet.
    public static func decode(from buffer: inout ByteBuffer) throws(WireError) -> StartupPacket? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard length >= 8 else { throw WireError(.invalidLength(Int(length))) }
        guard length <= ProtocolCode.maxStartupPacketLength else {
            throw WireError(.messageTooLarge(length: Int(length), limit: ProtocolCode.maxStartupPacketLength))
        }
        guard buffer.readableBytes >= Int(length) else { return nil }
        var packet = buffer.readSlice(length: Int(length))!
        packet.moveReaderIndex(forwardBy: 4)
        let code = packet.readInteger(as: Int32.self)!
        switch code {
        case ProtocolCode.sslRequest:
            return .sslRequest
        case ProtocolCode.gssEncRequest:
            return .gssEncRequest
        case ProtocolCode.cancelRequest:
            guard let pid = packet.readInteger(as: Int32.self), let key = packet.readInteger(as: Int32.self) else {
                throw WireError.malformed("CancelRequest too short")
            }
            return .cancel(processID: pid, secretKey: key)
        case ProtocolCode.protocolVersion3:
            return .startup(parameters: try decodeParameters(&packet))
        case let code where code >> 16 == 3:
            // 3.x with x > 0 (e.g. 3.2 from PostgreSQL 18 clients): accepted; the session answers with
            // NegotiateProtocolVersion and speaks 3.0, as PostgreSQL does for minor versions it lacks.
            return .startupNewerMinor(minor: Int(code & 0xFFFF), parameters: try decodeParameters(&packet))
        default:
            throw WireError(.unsupportedProtocol(major: Int(code >> 16), minor: Int(code & 0xFFFF)))
        }
    }

    private static func decodeParameters(_ packet: inout ByteBuffer) throws(WireError) -> [(String, String)] {
        var parameters: [(String, String)] = []
        while true {
            guard let name = packet.readNullTerminatedString() else {
                throw WireError.malformed("startup packet parameters are not terminated")
            }
            if name.isEmpty { break }
            guard let value = packet.readNullTerminatedString() else {
                throw WireError.malformed("startup parameter \"\(name)\" has no value")
            }
            parameters.append((name, value))
        }
        return parameters
    }
}
