/// Typed decoding of the few backend messages the pooler must understand (authentication, parameters, keys, errors).
import NIOCore

public enum AuthenticationRequest: Sendable, Equatable {
    case ok
    case cleartextPassword
    case md5Password(salt: [UInt8])
    case sasl(mechanisms: [String])
    case saslContinue(data: [UInt8])
    case saslFinal(data: [UInt8])
    case unsupported(code: Int32)

    public static func decode(_ payload: ByteBuffer) throws(WireError) -> AuthenticationRequest {
        var payload = payload
        guard let code = payload.readInteger(as: Int32.self) else { throw .malformed("Authentication without code") }
        switch code {
        case AuthenticationCode.ok: return .ok
        case AuthenticationCode.cleartextPassword: return .cleartextPassword
        case AuthenticationCode.md5Password:
            guard let salt = payload.readBytes(length: 4) else { throw .malformed("AuthenticationMD5Password without salt") }
            return .md5Password(salt: salt)
        case AuthenticationCode.sasl:
            var mechanisms: [String] = []
            while let name = payload.readNullTerminatedString(), !name.isEmpty { mechanisms.append(name) }
            return .sasl(mechanisms: mechanisms)
        case AuthenticationCode.saslContinue:
            return .saslContinue(data: payload.readBytes(length: payload.readableBytes) ?? [])
        case AuthenticationCode.saslFinal:
            return .saslFinal(data: payload.readBytes(length: payload.readableBytes) ?? [])
        default:
            return .unsupported(code: code)
        }
    }
}

public struct ParameterStatus: Sendable, Equatable {
    public var name: String
    public var value: String

    public static func decode(_ payload: ByteBuffer) throws(WireError) -> ParameterStatus {
        var payload = payload
        guard let name = payload.readNullTerminatedString(), let value = payload.readNullTerminatedString() else {
            throw .malformed("ParameterStatus")
        }
        return ParameterStatus(name: name, value: value)
    }
}

public struct BackendKeyData: Sendable, Equatable, Hashable {
    public var processID: Int32
    public var secretKey: Int32

    public init(processID: Int32, secretKey: Int32) {
        self.processID = processID
        self.secretKey = secretKey
    }

    public static func decode(_ payload: ByteBuffer) throws(WireError) -> BackendKeyData {
        guard let (pid, key) = payload.getMultipleIntegers(at: payload.readerIndex, as: (Int32, Int32).self) else {
            throw .malformed("BackendKeyData")
        }
        return BackendKeyData(processID: pid, secretKey: key)
    }
}

/// ErrorResponse / NoticeResponse fields, keyed by their one-byte field codes.
public struct ErrorFields: Sendable, Equatable {
    public var fields: [UInt8: String]

    public init(fields: [UInt8: String]) { self.fields = fields }

    public var severity: String? { fields[UInt8(ascii: "S")] }
    public var sqlState: String? { fields[UInt8(ascii: "C")] }
    public var message: String? { fields[UInt8(ascii: "M")] }

    public static func decode(_ payload: ByteBuffer) throws(WireError) -> ErrorFields {
        var payload = payload
        var fields: [UInt8: String] = [:]
        while let code = payload.readInteger(as: UInt8.self), code != 0 {
            guard let value = payload.readNullTerminatedString() else { throw .malformed("ErrorResponse field") }
            fields[code] = value
        }
        return ErrorFields(fields: fields)
    }
}
