/// Message identifiers and protocol codes of the PostgreSQL v3 protocol. Inlinable computed properties rather than
/// `static let`s: another module reaches a `static let` through a lazy-initialisation accessor on every use, and the
/// relay compares message identifiers for every frame.
public enum FrontendID {
    @inlinable public static var query: UInt8 { UInt8(ascii: "Q") }
    @inlinable public static var parse: UInt8 { UInt8(ascii: "P") }
    @inlinable public static var bind: UInt8 { UInt8(ascii: "B") }
    @inlinable public static var describe: UInt8 { UInt8(ascii: "D") }
    @inlinable public static var execute: UInt8 { UInt8(ascii: "E") }
    @inlinable public static var sync: UInt8 { UInt8(ascii: "S") }
    @inlinable public static var flush: UInt8 { UInt8(ascii: "H") }
    @inlinable public static var close: UInt8 { UInt8(ascii: "C") }
    @inlinable public static var terminate: UInt8 { UInt8(ascii: "X") }
    @inlinable public static var copyData: UInt8 { UInt8(ascii: "d") }
    @inlinable public static var copyDone: UInt8 { UInt8(ascii: "c") }
    @inlinable public static var copyFail: UInt8 { UInt8(ascii: "f") }
    @inlinable public static var functionCall: UInt8 { UInt8(ascii: "F") }
    /// PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse.
    @inlinable public static var password: UInt8 { UInt8(ascii: "p") }

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
    @inlinable public static var authentication: UInt8 { UInt8(ascii: "R") }
    @inlinable public static var parameterStatus: UInt8 { UInt8(ascii: "S") }
    @inlinable public static var backendKeyData: UInt8 { UInt8(ascii: "K") }
    @inlinable public static var readyForQuery: UInt8 { UInt8(ascii: "Z") }
    @inlinable public static var errorResponse: UInt8 { UInt8(ascii: "E") }
    @inlinable public static var noticeResponse: UInt8 { UInt8(ascii: "N") }
    @inlinable public static var commandComplete: UInt8 { UInt8(ascii: "C") }
    @inlinable public static var dataRow: UInt8 { UInt8(ascii: "D") }
    @inlinable public static var rowDescription: UInt8 { UInt8(ascii: "T") }
    @inlinable public static var emptyQueryResponse: UInt8 { UInt8(ascii: "I") }
    @inlinable public static var parseComplete: UInt8 { UInt8(ascii: "1") }
    @inlinable public static var bindComplete: UInt8 { UInt8(ascii: "2") }
    @inlinable public static var closeComplete: UInt8 { UInt8(ascii: "3") }
    @inlinable public static var noData: UInt8 { UInt8(ascii: "n") }
    @inlinable public static var parameterDescription: UInt8 { UInt8(ascii: "t") }
    @inlinable public static var portalSuspended: UInt8 { UInt8(ascii: "s") }
    @inlinable public static var copyInResponse: UInt8 { UInt8(ascii: "G") }
    @inlinable public static var copyOutResponse: UInt8 { UInt8(ascii: "H") }
    @inlinable public static var copyBothResponse: UInt8 { UInt8(ascii: "W") }
    @inlinable public static var copyData: UInt8 { UInt8(ascii: "d") }
    @inlinable public static var copyDone: UInt8 { UInt8(ascii: "c") }
    @inlinable public static var notificationResponse: UInt8 { UInt8(ascii: "A") }
    @inlinable public static var functionCallResponse: UInt8 { UInt8(ascii: "V") }
    @inlinable public static var negotiateProtocolVersion: UInt8 { UInt8(ascii: "v") }
}

public enum ProtocolCode {
    @inlinable public static var protocolVersion3: Int32 { 196_608 }  // 3.0
    @inlinable public static var sslRequest: Int32 { 80_877_103 }
    @inlinable public static var gssEncRequest: Int32 { 80_877_104 }
    @inlinable public static var cancelRequest: Int32 { 80_877_102 }
    /// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
    @inlinable public static var maxStartupPacketLength: Int { 10_000 }
}

public enum AuthenticationCode {
    @inlinable public static var ok: Int32 { 0 }
    @inlinable public static var cleartextPassword: Int32 { 3 }
    @inlinable public static var md5Password: Int32 { 5 }
    @inlinable public static var sasl: Int32 { 10 }
    @inlinable public static var saslContinue: Int32 { 11 }
    @inlinable public static var saslFinal: Int32 { 12 }
}

/// Transaction status byte of ReadyForQuery.
public enum TransactionStatus: UInt8, Sendable {
    case idle = 73  // "I"
    case inTransaction = 84  // "T"
    case failed = 69  // "E"
}
