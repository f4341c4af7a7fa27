/// What a client's startup packet asks of its session, as PostgreSQL would apply it: the `options` switches first,
/// then every other parameter of the packet (PostgreSQL takes any it does not know as a setting, as asyncpg's
/// `server_settings` and JDBC's `extra_float_digits` rely on). Reported parameters (TimeZone, DateStyle, ...) follow
/// the client through ParameterStatus as before; any other setting is kept here and applied to each server
/// connection the client uses, with `set_config`, as `-c name=value` would.
import PostgresWire

/// One setting a client chose at login. The name is lower case: PostgreSQL matches setting names without case.
struct SessionSetting: Equatable, Sendable {
    let name: String
    let value: String
}

struct StartupSettings: Equatable {
    /// Reported parameters the client chose, by their reported spelling.
    var tracked: [String: String] = [:]
    /// Every other setting, one per name (the last given wins), in the order first given.
    var settings: [SessionSetting] = []
    /// What a server must accept before the login succeeds: every setting, from `options` or the packet, except
    /// `application_name`.
    var toCheck: [SessionSetting] = []

    /// Startup parameters that are not settings.
    static let protocolParameters: Set<String> = ["user", "database", "options", "replication"]

    /// `trackedSpellings`: the reported parameters, lower-case name -> reported spelling.
    init(_ parameters: [(String, String)], trackedSpellings canonical: [String: String]) throws(StartupOptions.Failure) {
        var fromOptions: [(name: String, value: String)] = []
        if let options = parameters.last(where: { $0.0 == "options" })?.1 {
            fromOptions = try StartupOptions.settings(in: options)
        }
        let given = fromOptions.map { ($0.name, $0.value) } + parameters.filter { !Self.protocolParameters.contains($0.0) }
        var checked: [SessionSetting] = []
        for (name, value) in given {
            let lower = name.lowercased()
            guard Self.isValidName(lower) else {
                throw StartupOptions.Failure(state: .invalidName, message: "invalid configuration parameter name \"\(name)\"")
            }
            let setting = SessionSetting(name: lower, value: value)
            if let reported = canonical[lower] {
                tracked[reported] = value
            } else {
                Self.put(setting, in: &settings)
            }
            // Reported parameters are checked too (application_name takes any text): a value PostgreSQL refuses
            // would otherwise fail every replay of the client's parameters, unseen, and leave the previous client's.
            if lower != "application_name" { Self.put(setting, in: &checked) }
        }
        toCheck = checked
    }

    /// A setting that cannot mean what the client wants through a pooler in transaction mode: the pooler, not the
    /// client, holds connections idle, so `idle_session_timeout` would end pooled connections between clients.
    static func refusalInTransactionMode(_ settings: [SessionSetting]) -> StartupOptions.Failure? {
        guard let setting = settings.first(where: { $0.name == "idle_session_timeout" }),
              setting.value.contains(where: { $0.isNumber && $0 != "0" }) else { return nil }
        return StartupOptions.Failure(state: .featureNotSupported,
                                      message: "idle_session_timeout cannot be set in transaction mode: the pooler keeps server connections idle between clients")
    }

    /// PostgreSQL's setting names: letters, digits, `_` and `$`, with dots between the parts of a custom one.
    static func isValidName(_ name: String) -> Bool {
        var previous = UInt8(ascii: ".")  // a name cannot start with a dot
        for byte in name.utf8 {
            let isPart = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$") || byte >= 0x80
            guard isPart || (byte == UInt8(ascii: ".") && previous != UInt8(ascii: ".")) else { return false }
            previous = byte
        }
        return previous != UInt8(ascii: ".")  // not empty, and no dot at the end
    }

    private static func put(_ setting: SessionSetting, in list: inout [SessionSetting]) {
        if let index = list.firstIndex(where: { $0.name == setting.name }) {
            list[index] = setting
        } else {
            list.append(setting)
        }
    }

    // MARK: SQL

    /// The statement that checks `settings` at login: each is set for that statement only, so nothing stays behind.
    /// `escapingNonASCII`: see `literal`.
    static func checkQuery(_ settings: [SessionSetting], escapingNonASCII: Bool = false) -> String {
        "SELECT " + settings.map { setConfig($0, isLocal: true, escapingNonASCII: escapingNonASCII) }
            .joined(separator: ", ")
    }

    /// Statements that turn a server connection holding `applied` into one holding `wanted`: RESET for what only the
    /// previous client had, `set_config` for what differs (for all of `wanted` when the values applied are not
    /// `known`). Empty when nothing differs.
    static func replay(from applied: [SessionSetting], known: Bool = true, to wanted: [SessionSetting],
                       escapingNonASCII: Bool = false) -> String {
        var sql = ""
        for setting in applied where !wanted.contains(where: { $0.name == setting.name }) {
            sql += "RESET \(identifier(setting.name));"
        }
        for setting in wanted where !known || !applied.contains(setting) {
            sql += "SELECT \(setConfig(setting, isLocal: false, escapingNonASCII: escapingNonASCII));"
        }
        return sql
    }

    /// `SET name TO 'value';` for a reported parameter (its name is one of the tracked spellings: no quoting).
    static func setReported(_ name: String, to value: String, escapingNonASCII: Bool) -> String {
        "SET \(name) TO \(literal(value, escapingNonASCII: escapingNonASCII));"
    }

    /// `pg_catalog.set_config(name, value, isLocal)`.
    private static func setConfig(_ setting: SessionSetting, isLocal: Bool, escapingNonASCII: Bool) -> String {
        "pg_catalog.set_config(\(literal(setting.name, escapingNonASCII: escapingNonASCII)), "
            + "\(literal(setting.value, escapingNonASCII: escapingNonASCII)), \(isLocal))"
    }

    /// A string constant that reads the same whatever `standard_conforming_strings` is. The statement goes out as
    /// UTF-8; `escapingNonASCII` (for a server connection whose `client_encoding` is neither UTF8 nor SQL_ASCII, as
    /// a LATIN1 client leaves it) writes other characters than ASCII as `\u` escapes instead, which the server
    /// reads as those characters whatever the encoding (raw UTF-8 bytes it would read as LATIN1). Not always:
    /// a SQL_ASCII database refuses such escapes.
    static func literal(_ value: String, escapingNonASCII: Bool = false) -> String {
        var sql = "E'"
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": sql += "\\\\"
            case "'": sql += "''"
            case _ where scalar.isASCII || !escapingNonASCII: sql.unicodeScalars.append(scalar)
            case _ where scalar.value <= 0xFFFF: sql += "\\u" + hex(scalar.value, digits: 4)
            default: sql += "\\U" + hex(scalar.value, digits: 8)
            }
        }
        return sql + "'"
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// A setting name as SQL: each dotted part quoted.
    static func identifier(_ name: String) -> String {
        name.split(separator: ".", omittingEmptySubsequences: false)
            .map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: ".")
    }

    /// The key under which a pool remembers that a server accepted `settings`.
    static func checkKey(_ settings: [SessionSetting]) -> String {
        settings.map { "\($0.name)=\($0.value)" }.joined(separator: "\u{0}")
    }
}
