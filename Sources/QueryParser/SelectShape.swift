/// What a query across shards needs to know about a top-level SELECT: whether its rows from several shards can be
/// combined into the right answer (no aggregates, grouping, DISTINCT, windows, set operations, subqueries or CTEs,
/// OFFSET), and how to merge them (ORDER BY on output columns, a constant LIMIT).
public struct SelectShape: Equatable, Sendable {
    public struct SortKey: Equatable, Sendable {
        public enum Column: Equatable, Sendable {
            /// An output column by name (the last part of `t.col`, or an alias).
            case name(String)
            /// `ORDER BY 2`: an output column by position, from 1.
            case position(Int)
        }
        public var column: Column
        public var descending: Bool
        /// NULLS FIRST / LAST as written; nil: PostgreSQL's default (last when ascending, first when descending).
        public var nullsFirst: Bool?
        /// `COLLATE "x"` on the key, if any.
        public var collation: String?

        public init(column: Column, descending: Bool = false, nullsFirst: Bool? = nil, collation: String? = nil) {
            self.column = column
            self.descending = descending
            self.nullsFirst = nullsFirst
            self.collation = collation
        }
    }

    /// Why the rows of several shards cannot simply be combined, e.g. "aggregates"; nil when they can.
    public var obstacle: String?
    public var orderBy: [SortKey] = []
    /// A constant LIMIT (nil: none, or LIMIT ALL / NULL).
    public var limit: Int?

    public init(obstacle: String? = nil, orderBy: [SortKey] = [], limit: Int? = nil) {
        self.obstacle = obstacle
        self.orderBy = orderBy
        self.limit = limit
    }

    /// Aggregate functions of PostgreSQL (a user-defined aggregate cannot be told from a function by name).
    static let aggregates: Set<String> = [
        "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or", "every", "bit_and",
        "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "xmlagg", "stddev",
        "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr", "covar_pop", "covar_samp",
        "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy",
        "regr_syy", "percentile_cont", "percentile_disc", "mode", "rank", "dense_rank", "percent_rank", "cume_dist",
        "range_agg", "range_intersect_agg", "json_objectagg", "json_arrayagg", "any_value",
    ]
}

extension SelectShape {
    /// The shape of a `SelectStmt` node.
    init(select node: ParseTreeJSON) {
        self.init()
        obstacle = Self.obstacle(in: node)
        guard obstacle == nil else { return }
        for item in node["sortClause"]?.arrayValue ?? [] {
            guard let sortBy = item["SortBy"] else { continue }
            guard sortBy["useOp"] == nil else {
                obstacle = "ORDER BY ... USING"
                return
            }
            var key = sortBy["node"] ?? .null
            var collation: String?
            if let collate = key["CollateClause"] {
                collation = collate["collname"]?.arrayValue.compactMap { $0["String"]?["sval"]?.stringValue }.last
                key = collate["arg"] ?? .null
            }
            let column: SortKey.Column
            if let fields = key["ColumnRef"]?["fields"]?.arrayValue, let last = fields.last?["String"]?["sval"]?.stringValue {
                column = .name(last)
            } else if case .number(let text)? = key["A_Const"]?["ival"]?["ival"], let position = Int(text), position > 0 {
                column = .position(position)
            } else {
                obstacle = "ORDER BY an expression (order by output columns)"
                return
            }
            let descending = sortBy["sortby_dir"]?.stringValue == "SORTBY_DESC"
            let nulls: Bool?
            switch sortBy["sortby_nulls"]?.stringValue {
            case "SORTBY_NULLS_FIRST": nulls = true
            case "SORTBY_NULLS_LAST": nulls = false
            default: nulls = nil
            }
            orderBy.append(SortKey(column: column, descending: descending, nullsFirst: nulls, collation: collation))
        }
        if let count = node["limitCount"] {
            if case .number(let text)? = count["A_Const"]?["ival"]?["ival"], let value = Int(text) {
                limit = value
            } else if count["A_Const"]?["ival"] != nil || count["A_Const"]?["isnull"] != nil {
                limit = count["A_Const"]?["isnull"] != nil ? nil : 0  // LIMIT 0 leaves ival out; LIMIT NULL/ALL
            } else {
                obstacle = "LIMIT that is not a constant"
            }
        }
    }

    private static func obstacle(in node: ParseTreeJSON) -> String? {
        if let op = node["op"]?.stringValue, op != "SETOP_NONE" { return "UNION, INTERSECT or EXCEPT" }
        if node["withClause"] != nil { return "WITH (common table expressions)" }
        if !(node["groupClause"]?.arrayValue.isEmpty ?? true) { return "GROUP BY" }
        if node["havingClause"] != nil { return "HAVING" }
        if node["distinctClause"] != nil { return "DISTINCT" }
        if !(node["windowClause"]?.arrayValue.isEmpty ?? true) { return "window functions" }
        if node["limitOffset"] != nil { return "OFFSET" }
        if node["limitOption"]?.stringValue == "LIMIT_OPTION_WITH_TIES" { return "FETCH ... WITH TIES" }
        if node["lockingClause"] != nil { return "FOR UPDATE/SHARE" }
        if node["intoClause"] != nil { return "SELECT INTO" }
        var found: String?
        find(in: node, &found)
        return found
    }

    /// Aggregates, window functions and subqueries anywhere in the statement.
    private static func find(in node: ParseTreeJSON, _ found: inout String?) {
        guard found == nil else { return }
        switch node {
        case .object(let members):
            for member in members {
                switch member.key {
                case "SubLink", "RangeSubselect":
                    found = "subqueries"
                    return
                case "FuncCall":
                    let value = member.value
                    if value["over"] != nil {
                        found = "window functions"
                        return
                    }
                    let name = value["funcname"]?.arrayValue.compactMap { $0["String"]?["sval"]?.stringValue }.last?
                        .lowercased() ?? ""
                    if aggregates.contains(name) || value["agg_star"] != nil || value["agg_distinct"] != nil
                        || value["agg_filter"] != nil || value["agg_order"] != nil || value["agg_within_group"] != nil {
                        found = "aggregates (\(name))"
                        return
                    }
                default:
                    break
                }
                find(in: member.value, &found)
            }
        case .array(let values):
            for value in values { find(in: value, &found) }
        default:
            break
        }
    }
}
