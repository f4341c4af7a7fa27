/// Writes protocol messages into a ByteBuffer: backend messages (to clients) and frontend messages (to servers).
import NIOCore

public enum MessageEncoder {
    /// Writes `id`, a length placeholder, the body, then patches the length.
    @inlinable
    public static func frame(_ id: UInt8, into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        buffer.writeInteger(id)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
    }

    // MARK: backend -> client

    public static func authentication(_ code: Int32, data: [UInt8] = [], into buffer: inout ByteBuffer) {
        frame(BackendID.authentication, into: &buffer) {
            $0.writeInteger(code)
            $0.writeBytes(data)
        }
    }

    public static func authenticationOK(into buffer: inout ByteBuffer) {
        authentication(AuthenticationCode.ok, into: &buffer)
    }

    public static func authenticationMD5(salt: [UInt8], into buffer: inout ByteBuffer) {
        authentication(AuthenticationCode.md5Password, data: salt, into: &buffer)
    }

    public static func authenticationSASL(mechanisms: [String], into buffer: inout ByteBuffer) {
        frame(BackendID.authentication, into: &buffer) {
            $0.writeInteger(AuthenticationCode.sasl)
            for mechanism in mechanisms { $0.writeNullTerminatedString(mechanism) }
            $0.writeInteger(UInt8(0))
        }
    }

    public static func parameterStatus(_ name: String, _ value: String, into buffer: inout ByteBuffer) {
        frame(BackendID.parameterStatus, into: &buffer) {
            $0.writeNullTerminatedString(name)
            $0.writeNullTerminatedString(value)
        }
    }

    public static func backendKeyData(_ key: BackendKeyData, into buffer: inout ByteBuffer) {
        frame(BackendID.backendKeyData, into: &buffer) {
            $0.writeMultipleIntegers(key.processID, key.secretKey)
        }
    }

    public static func readyForQuery(_ status: TransactionStatus, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(BackendID.readyForQuery, Int32(5), status.rawValue)
    }

    /// ErrorResponse (or NoticeResponse with `id: BackendID.noticeResponse`).
    public static func errorResponse(
        severity: ErrorSeverity, state: SQLState, message: String, detail: String? = nil, hint: String? = nil,
        id: UInt8 = BackendID.errorResponse, into buffer: inout ByteBuffer
    ) {
        frame(id, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "S")); $0.writeNullTerminatedString(severity.rawValue)
            $0.writeInteger(UInt8(ascii: "V")); $0.writeNullTerminatedString(severity.rawValue)
            $0.writeInteger(UInt8(ascii: "C")); $0.writeNullTerminatedString(state.code)
            $0.writeInteger(UInt8(ascii: "M")); $0.writeNullTerminatedString(message)
            if let detail { $0.writeInteger(UInt8(ascii: "D")); $0.writeNullTerminatedString(detail) }
            if let hint { $0.writeInteger(UInt8(ascii: "H")); $0.writeNullTerminatedString(hint) }
            $0.writeInteger(UInt8(0))
        }
    }

    /// An ErrorResponse (or NoticeResponse) with these fields: severity, code and message first, as PostgreSQL
    /// sends them, then the rest by field code.
    public static func errorResponse(_ error: ErrorFields, id: UInt8 = BackendID.errorResponse,
                                     into buffer: inout ByteBuffer) {
        let leading: [UInt8] = [UInt8(ascii: "S"), UInt8(ascii: "V"), UInt8(ascii: "C"), UInt8(ascii: "M")]
        let order = leading.filter { error.fields[$0] != nil }
            + error.fields.keys.filter { !leading.contains($0) }.sorted()
        frame(id, into: &buffer) {
            for code in order {
                $0.writeInteger(code)
                $0.writeNullTerminatedString(error.fields[code]!)
            }
            $0.writeInteger(UInt8(0))
        }
    }

    /// NegotiateProtocolVersion: the newest version supported (PostgreSQL sends the whole code, e.g. 3.0 = 196608)
    /// and the `_pq_.` options not recognised.
    public static func negotiateProtocolVersion(newestVersion: Int32, unrecognized: [String], into buffer: inout ByteBuffer) {
        frame(BackendID.negotiateProtocolVersion, into: &buffer) {
            $0.writeInteger(newestVersion)
            $0.writeInteger(Int32(unrecognized.count))
            for option in unrecognized { $0.writeNullTerminatedString(option) }
        }
    }

    public static func commandComplete(_ tag: String, into buffer: inout ByteBuffer) {
        frame(BackendID.commandComplete, into: &buffer) { $0.writeNullTerminatedString(tag) }
    }

    // MARK: frontend -> server

    public static func startupMessage(parameters: [(String, String)], into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(ProtocolCode.protocolVersion3)
        for (name, value) in parameters {
            buffer.writeNullTerminatedString(name)
            buffer.writeNullTerminatedString(value)
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
    }

    public static func cancelRequest(_ key: BackendKeyData, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(Int32(16), ProtocolCode.cancelRequest, key.processID, key.secretKey)
    }

    public static func sslRequest(into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(Int32(8), ProtocolCode.sslRequest)
    }

    public static func passwordMessage(_ password: String, into buffer: inout ByteBuffer) {
        frame(FrontendID.password, into: &buffer) { $0.writeNullTerminatedString(password) }
    }

    public static func saslInitialResponse(mechanism: String, data: [UInt8], into buffer: inout ByteBuffer) {
        frame(FrontendID.password, into: &buffer) {
            $0.writeNullTerminatedString(mechanism)
            $0.writeInteger(Int32(data.count))
            $0.writeBytes(data)
        }
    }

    public static func saslResponse(data: [UInt8], into buffer: inout ByteBuffer) {
        frame(FrontendID.password, into: &buffer) { $0.writeBytes(data) }
    }

    public static func query(_ sql: String, into buffer: inout ByteBuffer) {
        frame(FrontendID.query, into: &buffer) { $0.writeNullTerminatedString(sql) }
    }

    /// Parse, Bind and Execute of an unnamed statement with text parameters (no Sync).
    public static func extendedQuery(_ sql: String, parameters: [String?], into buffer: inout ByteBuffer) {
        frame(FrontendID.parse, into: &buffer) {
            $0.writeInteger(UInt8(0))  // unnamed statement
            $0.writeNullTerminatedString(sql)
            $0.writeInteger(Int16(0))  // parameter types inferred
        }
        frame(FrontendID.bind, into: &buffer) {
            $0.writeMultipleIntegers(UInt8(0), UInt8(0), Int16(0))  // unnamed portal and statement, text formats
            writeTextValues(parameters, into: &$0)
            $0.writeInteger(Int16(0))  // text results
        }
        frame(FrontendID.execute, into: &buffer) {
            $0.writeInteger(UInt8(0))
            $0.writeInteger(Int32(0))
        }
    }

    /// DataRow of text values (nil = SQL NULL).
    public static func dataRow(_ values: [String?], into buffer: inout ByteBuffer) {
        frame(BackendID.dataRow, into: &buffer) { writeTextValues(values, into: &$0) }
    }

    /// A count, then each value as its length and text (-1 for NULL): Bind parameters and DataRow columns.
    private static func writeTextValues(_ values: [String?], into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int16(values.count))
        for value in values {
            if let value {
                buffer.writeInteger(Int32(value.utf8.count))
                buffer.writeString(value)
            } else {
                buffer.writeInteger(Int32(-1))
            }
        }
    }

    public static func sync(into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(FrontendID.sync, Int32(4))
    }

    public static func terminate(into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(FrontendID.terminate, Int32(4))
    }

    public static func copyFail(_ message: String, into buffer: inout ByteBuffer) {
        frame(FrontendID.copyFail, into: &buffer) { $0.writeNullTerminatedString(message) }
    }
}
