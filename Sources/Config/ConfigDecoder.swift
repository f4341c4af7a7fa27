/// The one decoder from a `ConfigNode` tree (YAML or TOML) to `PgCatConfig`: table readers, typed values, unknown keys.

/// Which syntax a tree came from. Unknown keys are errors in YAML and warnings in TOML (PgCat ignores them there,
/// and a `pgcat.toml` that runs on PgCat must start here too).
enum ConfigSyntax {
    case yaml, toml
}

/// Shared state of one decoding run.
final class DecodeContext {
    let syntax: ConfigSyntax
    var sink = ProblemSink()
    /// Labels of index-keyed items, so validation names them as the file does.
    var labels = ItemLabels()

    init(syntax: ConfigSyntax) {
        self.syntax = syntax
    }
}

/// A value type the decoder can read from a node.
protocol NodeValue {
    /// "an integer", "a string", ... for "expected X, found Y".
    static var expectation: String { get }
    /// "integers", "strings", ... for lists.
    static var plural: String { get }
    static func decode(_ node: ConfigNode) -> Self?
}

extension Int: NodeValue {
    static var expectation: String { "an integer" }
    static var plural: String { "integers" }
    static func decode(_ node: ConfigNode) -> Int? {
        if case .integer(let value) = node { return value }
        return nil
    }
}

extension Bool: NodeValue {
    static var expectation: String { "a boolean (true or false)" }
    static var plural: String { "booleans" }
    static func decode(_ node: ConfigNode) -> Bool? {
        if case .bool(let value) = node { return value }
        return nil
    }
}

extension String: NodeValue {
    static var expectation: String { "a string" }
    static var plural: String { "strings" }
    static func decode(_ node: ConfigNode) -> String? {
        if case .string(let value) = node { return value }
        return nil
    }
}

extension Array: NodeValue where Element: NodeValue {
    static var expectation: String { "a list of \(Element.plural)" }
    static var plural: String { "lists of \(Element.plural)" }
    static func decode(_ node: ConfigNode) -> [Element]? {
        guard case .array(let items) = node else { return nil }
        var result: [Element] = []
        for item in items {
            guard let value = Element.decode(item) else { return nil }
            result.append(value)
        }
        return result
    }
}

/// String-valued enums; matching ignores case, and `aliases` adds PgCat's other spellings.
protocol ConfigEnum: NodeValue, CaseIterable, RawRepresentable where RawValue == String {
    static var aliases: [String: Self] { get }
}

extension ConfigEnum {
    static var aliases: [String: Self] { [:] }
    static var plural: String { "values" }
    static var expectation: String {
        "one of " + (allCases.map(\.rawValue) + aliases.keys.sorted()).joined(separator: ", ")
    }
    static func decode(_ node: ConfigNode) -> Self? {
        guard case .string(let text) = node else { return nil }
        let lower = text.lowercased()
        if let value = allCases.first(where: { $0.rawValue.lowercased() == lower }) { return value }
        return aliases.first(where: { $0.key.lowercased() == lower })?.value
    }
}

extension PoolMode: ConfigEnum {}
extension ServerRole: ConfigEnum {}
extension DefaultRole: ConfigEnum {}
extension ShardingFunction: ConfigEnum {}
extension AuthType: ConfigEnum {}
extension ClientTLSMode: ConfigEnum {}
extension IOEngine: ConfigEnum {}
extension MLFallback: ConfigEnum {}
extension MLAffinity: ConfigEnum {}
extension LoadBalancingMode: ConfigEnum {
    static var aliases: [String: LoadBalancingMode] { ["least_outstanding_connections": .leastOutstandingConnections] }
}

/// Reads the keys of one table, remembering which keys were asked for so the rest can be reported as unknown.
struct TableReader {
    let path: String
    let entries: [ConfigEntry]
    let context: DecodeContext
    private var asked: [String] = []

    /// Nil (with a problem recorded) when `node` is not a table.
    init?(_ node: ConfigNode, path: String, context: DecodeContext) {
        guard case .table(let entries) = node else {
            context.sink.add(path, "expected a table, found \(node.kindDescription)", unusable: true)
            return nil
        }
        self.path = path
        self.entries = entries
        self.context = context
    }

    func path(_ key: String) -> String { joinPath(path, key) }

    /// The raw value of `key`; nil when absent or null.
    mutating func node(_ key: String) -> ConfigNode? {
        asked.append(key)
        guard let value = entries.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    mutating func get<T: NodeValue>(_ key: String, as type: T.Type = T.self) -> T? {
        guard let node = node(key) else { return nil }
        guard let value = T.decode(node) else {
            // (a password's value is never quoted: `password: 123456` is an integer in YAML)
            let found = key.lowercased().contains("password") ? node.kindWithoutValue : node.kindDescription
            context.sink.add(path(key), "expected \(T.expectation), found \(found)")
            return nil
        }
        return value
    }

    mutating func read<T: NodeValue>(_ key: String, into target: inout T) {
        if let value = get(key, as: T.self) { target = value }
    }

    mutating func read<T: NodeValue>(_ key: String, into target: inout T?) {
        if let value = get(key, as: T.self) { target = value }
    }

    /// Like `read`, but a missing key is a problem.
    mutating func require<T: NodeValue>(_ key: String, into target: inout T) {
        guard node(key) != nil else {
            context.sink.add(path(key), "is required")
            return
        }
        read(key, into: &target)
    }

    mutating func table(_ key: String) -> TableReader? {
        guard let node = node(key) else { return nil }
        return TableReader(node, path: path(key), context: context)
    }

    /// Reports every key that was never asked for: an error in YAML, a warning in TOML.
    func finish() {
        for entry in entries where !asked.contains(entry.key) {
            let shownPath = UnknownKeys.displayPath(joinPath(path, entry.key), entry.value)
            let hint = UnknownKeys.hint(for: entry.key, known: asked).map { " (\($0))" } ?? ""
            let what = shownPath == joinPath(path, entry.key) ? "unknown key" : "unknown key '\(entry.key)'"
            switch context.syntax {
            case .yaml:
                context.sink.add(shownPath, "\(what)\(hint)")
            case .toml:
                context.sink.warn(shownPath, "\(what), ignored as PgCat ignores it\(hint)")
            }
        }
    }
}

extension DecodeContext {
    /// Items of a map keyed by index (`"0": ...`) or of a list (index = position), in index order.
    /// With `contiguous`, keys must be the integers 0..n-1 (shards); otherwise any keys, numeric ones sorted first.
    func indexedItems(_ node: ConfigNode, path: String, contiguous: Bool) -> [(label: String, node: ConfigNode)] {
        switch node {
        case .array(let items):
            return items.enumerated().map { (String($0), $1) }
        case .table(let entries):
            if !contiguous {
                let sorted = entries.enumerated().sorted { a, b in
                    (Int(a.element.key) ?? Int.max, a.offset) < (Int(b.element.key) ?? Int.max, b.offset)
                }
                return sorted.map { ($0.element.key, $0.element.value) }
            }
            var numbered: [Int: ConfigNode] = [:]
            for entry in entries {
                guard let index = Int(entry.key), index >= 0 else {
                    sink.add(joinPath(path, entry.key), "keys must be integers 0, 1, 2, ... (shard numbers)")
                    continue
                }
                guard numbered[index] == nil else {
                    sink.add(joinPath(path, entry.key), "shard \(index) is defined more than once")
                    continue
                }
                numbered[index] = entry.value
            }
            let missing = (0..<numbered.count).filter { numbered[$0] == nil }
            if let first = missing.first {
                sink.add(path,
                         "shards must be numbered 0..\(numbered.count - 1) without gaps; shard \(first) is missing")
            }
            return numbered.keys.sorted().map { (String($0), numbered[$0]!) }
        default:
            sink.add(path,
                     "expected a table keyed by index (\"0\", \"1\", ...) or a list, found \(node.kindDescription)")
            return []
        }
    }
}
