/// Message identifiers and protocol codes of the PostgreSQL v3 protocol.
public enum FrontendID {
    public static let query = UInt8(ascii: "Q")
    public static let parse = UInt8(ascii: "P")
    public static let bind = UInt8(ascii: "B")
    public static let describe = UInt8(ascii: "D")
    public static let execute = UInt8(ascii: "E")
    public static let sync = UInt8(ascii: "S")
    public static let flush = UInt8(ascii: "H")
    public static let close = UInt8(ascii: "C")
    public static let terminate = UInt8(ascii: "X")
    public static let copyData = UInt8(ascii: "d")
    public static let copyDone = UInt8(ascii: "c")
    public static let copyFail = UInt8(ascii: "f")
    public static let functionCall = UInt8(ascii: "F")
    /// PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse.
    public static let password = UInt8(ascii: "p")

    /// Every identifier a client may send after startup.
    @inlinable
    public static func isValid(_ id: UInt8) -> Bool {
        switch id {
        case query, parse, bind, describe, execute, sync, flush, close, terminate,
             copyData, copyDone, copyFail, functionCall, password:
            return true
        default:
            return false
        }
    }
}

public enum BackendID {
    public static let authentication = UInt8(ascii: "R")
    public static let parameterStatus = UInt8(ascii: "S")
    public static let backendKeyData = UInt8(ascii: "K")
    public static let readyForQuery = UInt8(ascii: "Z")
    public static let errorResponse = UInt8(ascii: "E")
    public static let noticeResponse = UInt8(ascii: "N")
    public static let commandComplete = UInt8(ascii: "C")
    public static let dataRow = UInt8(ascii: "D")
    public static let rowDescription = UInt8(ascii: "T")
    public static let emptyQueryResponse = UInt8(ascii: "I")
    public static let parseComplete = UInt8(ascii: "1")
    public static let bindComplete = UInt8(ascii: "2")
    public static let closeComplete = UInt8(ascii: "3")
    public static let noData = UInt8(ascii: "n")
    public static let parameterDescription = UInt8(ascii: "t")
    public static let portalSuspended = UInt8(ascii: "s")
    public static let copyInResponse = UInt8(ascii: "G")
    public static let copyOutResponse = UInt8(ascii: "H")
    public static let copyBothResponse = UInt8(ascii: "W")
    public static let copyData = UInt8(ascii: "d")
    public static let copyDone = UInt8(ascii: "c")
    public static let notificationResponse = UInt8(ascii: "A")
    public static let functionCallResponse = UInt8(ascii: "V")
    public static let negotiateProtocolVersion = UInt8(ascii: "v")
}

public enum ProtocolCode {
    public static let protocolVersion3: Int32 = 196_608  // 3.0
    public static let sslRequest: Int32 = 80_877_103
    public static let gssEncRequest: Int32 = 80_877_104
    public static let cancelRequest: Int32 = 80_877_102
    /// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
    public static let maxStartupPacketLength = 10_000
}

public enum AuthenticationCode {
    public static let ok: Int32 = 0
    public static let cleartextPassword: Int32 = 3
    public static let md5Password: Int32 = 5
    public static let sasl: Int32 = 10
    public static let saslContinue: Int32 = 11
    public static let saslFinal: Int32 = 12
}

/// Transaction status byte of ReadyForQuery.
public enum TransactionStatus: UInt8, Sendable {
    case idle = 73  // "I"
    case inTransaction = 84  // "T"
    case failed = 69  // "E"
}
