/// Typed decoding of frontend messages the pooler answers itself during authentication.
import NIOCore

/// The payload of a `p` message is interpreted by context: a password, or SASL data.
public enum PasswordPayload {
    public static func password(_ payload: ByteBuffer) throws(WireError) -> String {
        var payload = payload
        guard let value = payload.readNullTerminatedString() else { throw .malformed("PasswordMessage") }
        return value
    }

    /// SASLInitialResponse: mechanism name, Int32 length (-1 = none: data nil), data.
    public static func saslInitial(_ payload: ByteBuffer) throws(WireError) -> (mechanism: String, data: [UInt8]?) {
        var payload = payload
        guard let mechanism = payload.readNullTerminatedString(), let length = payload.readInteger(as: Int32.self) else {
            throw .malformed("SASLInitialResponse")
        }
        if length == -1 { return (mechanism, nil) }
        guard length >= 0 else { throw .malformed("SASLInitialResponse length") }
        guard let data = payload.readBytes(length: Int(length)) else { throw .malformed("SASLInitialResponse data") }
        return (mechanism, data)
    }

    public static func saslResponse(_ payload: ByteBuffer) -> [UInt8] {
        payload.getBytes(at: payload.readerIndex, length: payload.readableBytes) ?? []
    }
}
