/// The format-neutral tree that both the YAML reader and the TOML parser produce, so one decoder serves both.

/// One value of a parsed config file. Tables keep their keys in file order.
public enum ConfigNode: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case float(Double)
    case bool(Bool)
    /// YAML `~`, `null` or an empty value. TOML has no null.
    case null
    case array([ConfigNode])
    case table([ConfigEntry])

    /// The value under `key` when this is a table.
    public subscript(key: String) -> ConfigNode? {
        guard case .table(let entries) = self else { return nil }
        return entries.first(where: { $0.key == key })?.value
    }

    /// The kind alone ("a string", "an integer", ...): for keys whose value is a secret, which must not reach a
    /// log or the admin console's RELOAD error.
    public var kindWithoutValue: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .bool: return "a boolean"
        case .null: return "null"
        case .array: return "a list"
        case .table: return "a table"
        }
    }

    /// Short description of the kind of value, for error messages ("an integer", "a table", ...).
    public var kindDescription: String {
        switch self {
        case .string(let s): return "a string (\(ConfigNode.quoted(s)))"
        case .integer(let i): return "an integer (\(i))"
        case .float(let d): return "a float (\(d))"
        case .bool(let b): return "a boolean (\(b))"
        case .null: return "null"
        case .array: return "a list"
        case .table: return "a table"
        }
    }

    static func quoted(_ s: String) -> String {
        let short = s.count > 40 ? String(s.prefix(40)) + "..." : s
        return "'\(short)'"
    }
}

/// A key and its value inside a table.
public struct ConfigEntry: Sendable, Equatable {
    public var key: String
    public var value: ConfigNode

    public init(key: String, value: ConfigNode) {
        self.key = key
        self.value = value
    }
}

/// Joins key path components the way problems name them: `pools.sharded_db.shards.1.servers.0`.
func joinPath(_ base: String, _ key: String) -> String {
    base.isEmpty ? key : base + "." + key
}
