/// SQLSTATE codes and severities the pooler itself sends (SPEC §1d).
public struct SQLState: Sendable, Hashable, CustomStringConvertible {
    public let code: String
    public init(_ code: String) { self.code = code }
    public var description: String { code }

    public static let protocolViolation = SQLState("08P01")
    public static let connectionFailure = SQLState("08006")
    public static let invalidPassword = SQLState("28P01")
    public static let invalidAuthorizationSpecification = SQLState("28000")
    public static let invalidCatalogName = SQLState("3D000")
    public static let queryCanceled = SQLState("57014")
    public static let adminShutdown = SQLState("57P01")
    public static let tooManyConnections = SQLState("53300")
    public static let configurationLimitExceeded = SQLState("53400")
    public static let programLimitExceeded = SQLState("54000")
    public static let idleInTransactionSessionTimeout = SQLState("25P03")
    public static let invalidSQLStatementName = SQLState("26000")
    public static let invalidCursorName = SQLState("34000")
    public static let featureNotSupported = SQLState("0A000")
    public static let internalError = SQLState("XX000")
    public static let syntaxError = SQLState("42601")
    public static let undefinedObject = SQLState("42704")
    public static let invalidName = SQLState("42602")
    public static let configFileError = SQLState("F0000")
}

public enum ErrorSeverity: String, Sendable {
    case error = "ERROR"
    case fatal = "FATAL"
    case panic = "PANIC"
    case warning = "WARNING"
    case notice = "NOTICE"
    case info = "INFO"
    case log = "LOG"
}
