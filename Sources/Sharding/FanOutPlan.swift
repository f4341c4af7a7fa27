/// `fan_out`: what to do with a statement that names no shard in a sharded pool. Pure: from the parser's facts.
import QueryParser

public enum FanOutPlan: Equatable, Sendable {
    /// Touches no sharded data (SELECT 1, SHOW, BEGIN, EXPLAIN, ...): one shard (`default_shard`) answers, as
    /// without fan-out.
    case oneShard
    /// A SELECT whose rows from every shard, concatenated or merged by its ORDER BY and cut by its LIMIT, are the
    /// answer.
    case select(SelectShape)
    /// DDL, SET and the like: every shard runs it; the client sees one shard's reply (all must succeed).
    case broadcast
    /// No correct answer can be put together: the client gets this reason in a 0A000 error.
    case refuse(String)

    public static func decide(_ facts: QueryFacts) -> FanOutPlan {
        guard let kind = facts.statementKinds.first else { return .oneShard }
        guard facts.statementKinds.count == 1 else {
            return .refuse("several statements in one query: send them one at a time, or name a shard")
        }
        switch kind {
        case "SelectStmt":
            if facts.tables.isEmpty && facts.select?.obstacle == nil { return .oneShard }
            if facts.writes { return .refuse("a SELECT that writes (\(facts.writeReason ?? "writes"))") }
            guard let shape = facts.select else { return .refuse("this SELECT") }
            if let obstacle = shape.obstacle { return .refuse("a SELECT with \(obstacle)") }
            return .select(shape)
        case "TransactionStmt", "VariableShowStmt", "ExplainStmt", "PrepareStmt", "DeallocateStmt", "ListenStmt",
             "UnlistenStmt", "NotifyStmt", "CheckPointStmt", "LoadStmt":
            return .oneShard
        case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt":
            return .refuse("a statement that reads or writes rows by key (\(Self.names[kind] ?? kind)) needs one: "
                           + "add the sharding key, SET SHARDING KEY, SET SHARD or a shard comment")
        default:
            if broadcastKinds.contains(kind) { return .broadcast }
            return .refuse("\(Self.names[kind] ?? kind) cannot run across shards")
        }
    }

    /// Statements every shard runs (schema changes, settings, maintenance).
    static let broadcastKinds: Set<String> = [
        "CreateStmt", "CreateTableAsStmt", "AlterTableStmt", "DropStmt", "IndexStmt", "TruncateStmt", "CommentStmt",
        "GrantStmt", "CreateFunctionStmt", "AlterFunctionStmt", "ViewStmt", "CreateSeqStmt", "AlterSeqStmt",
        "RenameStmt", "CreateSchemaStmt", "CreateExtensionStmt", "AlterExtensionStmt", "CreateTrigStmt",
        "CreatePolicyStmt", "AlterPolicyStmt", "CompositeTypeStmt", "CreateEnumStmt", "AlterEnumStmt", "DefineStmt",
        "CreateDomainStmt", "AlterDomainStmt", "VacuumStmt", "ReindexStmt", "ClusterStmt", "AlterObjectSchemaStmt",
        "AlterOwnerStmt", "RefreshMatViewStmt", "AlterDefaultPrivilegesStmt", "RuleStmt", "VariableSetStmt",
        "DiscardStmt", "CreateStatsStmt", "AlterStatsStmt",
    ]

    static let names: [String: String] = [
        "InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE",
        "CopyStmt": "COPY", "ExecuteStmt": "EXECUTE", "DoStmt": "DO", "CallStmt": "CALL", "LockStmt": "LOCK",
        "DeclareCursorStmt": "DECLARE CURSOR", "FetchStmt": "FETCH",
    ]
}
