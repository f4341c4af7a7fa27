/// What automatic sharding needs from a statement: the `column = value` (and `column IN (...)`) conditions of its
/// WHERE and JOIN ... ON clauses, table aliases, and an INSERT's column list and VALUES rows.
public struct ColumnCondition: Equatable, Sendable {
    /// The table or alias before the column, as written (`d` in `d.id`); nil when unqualified.
    public var qualifier: String?
    public var column: String
    /// Several for `IN (...)` lists and for OR-ed equalities.
    public var values: [FunctionCall.Argument]
    /// The index of its statement in the text (`QueryFacts.statementKinds`).
    public var statement = 0
}

public struct UpdatedColumns: Equatable, Sendable {
    public var table: String
    public var columns: [String]
    public var statement = 0
}

public struct InsertRows: Equatable, Sendable {
    public var table: String
    public var columns: [String]
    public var rows: [[FunctionCall.Argument]]
    public var statement = 0
}

extension QueryFacts {
    /// Reads the key conditions of one top-level statement (SELECT, UPDATE, DELETE, INSERT), the latest one in
    /// `statementKinds`.
    mutating func collectKeyFacts(kind: String, node: ParseTreeJSON) {
        let statement = statementKinds.count - 1
        switch kind {
        case "SelectStmt", "UpdateStmt", "DeleteStmt":
            let before = keyConditions.count
            if let clause = node["whereClause"] { conditions(in: clause) }
            for from in node["fromClause"]?.arrayValue ?? [] { joinConditions(in: from) }
            for index in before..<keyConditions.count { keyConditions[index].statement = statement }
            if kind == "UpdateStmt", let table = node["relation"]?["relname"]?.stringValue {
                let columns = node["targetList"]?.arrayValue.compactMap { $0["ResTarget"]?["name"]?.stringValue } ?? []
                updates.append(UpdatedColumns(table: table, columns: columns, statement: statement))
            }
        case "InsertStmt":
            guard let relation = node["relation"], let table = relation["relname"]?.stringValue else { return }
            let columns = node["cols"]?.arrayValue.compactMap { $0["ResTarget"]?["name"]?.stringValue } ?? []
            let rows = node["selectStmt"]?["SelectStmt"]?["valuesLists"]?.arrayValue.map { list in
                list["List"]?["items"]?.arrayValue.map { FunctionCall.value(of: $0) } ?? []
            } ?? []
            inserts.append(InsertRows(table: table, columns: columns, rows: rows, statement: statement))
        default:
            break
        }
    }

    private mutating func joinConditions(in node: ParseTreeJSON) {
        guard let join = node["JoinExpr"] else { return }
        if let quals = join["quals"] { conditions(in: quals) }
        if let left = join["larg"] { joinConditions(in: left) }
        if let right = join["rarg"] { joinConditions(in: right) }
    }

    private mutating func conditions(in node: ParseTreeJSON) {
        if let bool = node["BoolExpr"] {
            guard bool["boolop"]?.stringValue != "NOT_EXPR" else { return }
            for argument in bool["args"]?.arrayValue ?? [] { conditions(in: argument) }
            return
        }
        guard let expression = node["A_Expr"], expression["name"]?.arrayValue.first?["String"]?["sval"]?.stringValue == "="
        else { return }
        switch expression["kind"]?.stringValue {
        case "AEXPR_OP":
            if let condition = Self.condition(expression["lexpr"], [expression["rexpr"]])
                ?? Self.condition(expression["rexpr"], [expression["lexpr"]]) {
                keyConditions.append(condition)
            }
        case "AEXPR_IN":
            let items = expression["rexpr"]?["List"]?["items"]?.arrayValue ?? []
            if let condition = Self.condition(expression["lexpr"], items.map { Optional($0) }) {
                keyConditions.append(condition)
            }
        default:
            break
        }
    }

    private static func condition(_ column: ParseTreeJSON?, _ values: [ParseTreeJSON?]) -> ColumnCondition? {
        guard let fields = column?["ColumnRef"]?["fields"]?.arrayValue.compactMap({ $0["String"]?["sval"]?.stringValue }),
              let name = fields.last else { return nil }
        let parsed = values.map { FunctionCall.value(of: $0) }
        guard !parsed.isEmpty, !parsed.contains(.expression) else { return nil }
        return ColumnCondition(qualifier: fields.count >= 2 ? fields[fields.count - 2] : nil, column: name, values: parsed)
    }
}
