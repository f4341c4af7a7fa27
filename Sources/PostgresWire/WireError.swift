/// Errors raised while decoding bytes from a peer.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case messageTooLarge(length: Int, limit: Int)
        case invalidLength(Int)
        case unexpectedMessage(UInt8)
        case malformed(String)
        case unsupportedProtocol(major: Int, minor: Int)
    }

    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public static func malformed(_ what: String) -> WireError { WireError(.malformed(what)) }

    public var description: String {
        switch kind {
        case .messageTooLarge(let length, let limit):
            return "message of \(length) bytes exceeds the limit of \(limit) bytes"
        case .invalidLength(let length):
            return "invalid message length \(length)"
        case .unexpectedMessage(let id):
            // Only a printable byte is shown as a character: a NUL would end the error's message field.
            guard (0x21...0x7E).contains(id) else { return "unexpected message type \(id)" }
            return "unexpected message type \"\(Character(Unicode.Scalar(id)))\" (\(id))"
        case .malformed(let what):
            return "malformed message: \(what)"
        case .unsupportedProtocol(let major, let minor):
            return "unsupported frontend protocol \(major).\(minor): server supports 3.0"
        }
    }
}
