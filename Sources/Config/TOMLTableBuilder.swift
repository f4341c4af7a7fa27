/// The mutable table tree the TOML parser fills in, enforcing TOML's rules on redefining keys and tables.

/// How a table came to exist; decides whether a later header or dotted key may add to it.
enum TOMLTableOrigin {
    /// Created as the parent of a header (`[a.b]` creates `a`); a later `[a]` may still define it.
    case implicit
    /// Defined by its own `[header]` or `[[header]]`.
    case header
    /// Created by a dotted key (`a.b = 1` creates `a`).
    case dotted
}

final class TOMLTable {
    var origin: TOMLTableOrigin
    private(set) var keys: [String] = []
    private var values: [String: TOMLSlot] = [:]

    init(origin: TOMLTableOrigin) {
        self.origin = origin
    }

    subscript(key: String) -> TOMLSlot? {
        get { values[key] }
        set {
            if values[key] == nil, newValue != nil { keys.append(key) }
            values[key] = newValue
        }
    }

    func toNode() -> ConfigNode {
        .table(keys.map { key in ConfigEntry(key: key, value: values[key]!.toNode()) })
    }
}

enum TOMLSlot {
    /// A finished value: scalar, static array or inline table (none of which can be extended later).
    case value(ConfigNode)
    case table(TOMLTable)
    case tableArray([TOMLTable])

    func toNode() -> ConfigNode {
        switch self {
        case .value(let node): return node
        case .table(let table): return table.toNode()
        case .tableArray(let tables): return .array(tables.map { $0.toNode() })
        }
    }

    var isTable: Bool {
        if case .table = self { return true }
        return false
    }
}

/// A rule broken while building the tree; the parser adds the line number.
struct TOMLStructureError: Error {
    var message: String
}

extension TOMLTable {
    /// Walks to (or creates) the table a `[header]` names and marks it defined.
    func defineTable(_ path: [String]) throws(TOMLStructureError) -> TOMLTable {
        let parent = try descendForHeader(Array(path.dropLast()))
        let key = path.last!
        let name = path.joined(separator: ".")
        switch parent[key] {
        case nil:
            let table = TOMLTable(origin: .header)
            parent[key] = .table(table)
            return table
        case .table(let table):
            switch table.origin {
            case .implicit:
                table.origin = .header
                return table
            case .header:
                throw TOMLStructureError(message: "table [\(name)] is defined more than once")
            case .dotted:
                throw TOMLStructureError(message: "table [\(name)] was already defined with dotted keys")
            }
        case .tableArray:
            throw TOMLStructureError(message: "[\(name)] is an array of tables; use [[\(name)]]")
        case .value:
            throw TOMLStructureError(message: "key \(name) already has a value, it cannot become a table")
        }
    }

    /// Appends a new table to the array a `[[header]]` names.
    func appendTableArrayElement(_ path: [String]) throws(TOMLStructureError) -> TOMLTable {
        let parent = try descendForHeader(Array(path.dropLast()))
        let key = path.last!
        let name = path.joined(separator: ".")
        let element = TOMLTable(origin: .header)
        switch parent[key] {
        case nil:
            parent[key] = .tableArray([element])
        case .tableArray(var tables):
            tables.append(element)
            parent[key] = .tableArray(tables)
        case .table:
            throw TOMLStructureError(message: "[[\(name)]] names a table already defined with [\(name)] or dotted keys")
        case .value:
            throw TOMLStructureError(
                message: "key \(name) already has a value (a static array cannot be extended with [[\(name)]])")
        }
        return element
    }

    /// Sets `path = value` relative to this table, creating dotted-key tables on the way.
    func assign(_ path: [String], _ value: ConfigNode) throws(TOMLStructureError) {
        var table = self
        for (i, key) in path.dropLast().enumerated() {
            let name = path[...i].joined(separator: ".")
            switch table[key] {
            case nil:
                let child = TOMLTable(origin: .dotted)
                table[key] = .table(child)
                table = child
            case .table(let child):
                guard child.origin == .dotted else {
                    throw TOMLStructureError(message: "dotted key \(name) would add to a table defined elsewhere")
                }
                table = child
            case .tableArray, .value:
                throw TOMLStructureError(message: "key \(name) already has a value, it cannot become a table")
            }
        }
        let key = path.last!
        guard table[key] == nil else {
            throw TOMLStructureError(message: "duplicate key \(path.joined(separator: "."))")
        }
        table[key] = .value(value)
    }

    private func descendForHeader(_ path: [String]) throws(TOMLStructureError) -> TOMLTable {
        var table = self
        for (i, key) in path.enumerated() {
            switch table[key] {
            case nil:
                let child = TOMLTable(origin: .implicit)
                table[key] = .table(child)
                table = child
            case .table(let child):
                table = child
            case .tableArray(let tables):
                table = tables[tables.count - 1]
            case .value:
                let name = path[...i].joined(separator: ".")
                throw TOMLStructureError(message: "key \(name) already has a value, it cannot hold a table")
            }
        }
        return table
    }
}
