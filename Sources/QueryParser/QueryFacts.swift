/// What routing needs to know about a query text, read from libpg_query's parse tree once and cached: the kinds of
/// its statements, whether it writes or locks, the functions it calls and the tables it names, transaction control.
public struct QueryFacts: Equatable, Sendable {
    public enum Transaction: Equatable, Sendable {
        /// BEGIN / START TRANSACTION; `readOnly` is true for READ ONLY, false for READ WRITE, nil when unsaid.
        /// SERIALIZABLE READ ONLY counts as READ WRITE: a hot standby refuses serializable transactions.
        case begin(readOnly: Bool?)
        case commit, rollback
        /// SAVEPOINT, RELEASE, ROLLBACK TO, PREPARE TRANSACTION, ...
        case other
    }

    /// Top-level statement node names in order, e.g. `["SelectStmt"]`, `["InsertStmt", "SelectStmt"]`.
    public var statementKinds: [String] = []
    /// The text changes data, schema or server state, or takes row locks: anything but a plain read.
    public var writes = false
    /// Why it writes (for logs and tests), e.g. "InsertStmt", "FOR UPDATE", "nextval".
    public var writeReason: String?
    /// Functions called anywhere (CTEs and subqueries too), lower-case, schema-qualified as written
    /// (`pgml.embed`, `nextval`).
    public var functions: [String] = []
    /// `column = value` / `column IN (...)` conditions of the WHERE and JOIN clauses (automatic sharding).
    public var keyConditions: [ColumnCondition] = []
    /// Each INSERT's target, columns and VALUES rows (automatic sharding).
    public var inserts: [InsertRows] = []
    /// Each UPDATE's target and the columns it sets (automatic sharding refuses updating the key).
    public var updates: [UpdatedColumns] = []
    /// Table aliases in the text: alias -> table name.
    public var aliases: [String: String] = [:]
    /// Calls of `pgml.*` functions with their arguments (for the ML router), in the order found.
    public var pgmlCalls: [FunctionCall] = []
    /// Calls of pgml's functions without a schema (`embed(...)`), which are pgml's when the `search_path` in force
    /// at their statement has `pgml` (the ML router decides). Window and ordered-set calls (`rank() OVER ...`) are
    /// not among them.
    public var unqualifiedPGMLCalls: [FunctionCall] = []
    /// Changes of `search_path` in the text, in order, each with the index of its statement (`statementKinds`).
    public var searchPathChanges: [SearchPathStep] = []
    /// Tables named anywhere, schema-qualified as written (`public.users`, `users`).
    public var tables: [String] = []
    /// Every relation name in the text, schema-qualified as written: `tables` plus names that may be CTEs (a CTE's
    /// scope is not tracked) and the relations inside PREPARE and plain EXPLAIN. For refusing tables, where a
    /// false alarm is better than a miss.
    public var namedRelations: [String] = []
    /// The (last) transaction control statement in the text.
    public var transaction: Transaction?
    /// The BEGIN / START TRANSACTION in the text, if any (`BEGIN; SELECT ...` opens a transaction too).
    public var begins: Transaction?
    /// The highest `$n` parameter referenced.
    public var parameterCount = 0
    /// The shape of the first statement when it is a SELECT (queries across shards).
    public var select: SelectShape?
    /// `EXECUTE name(...)`: its arguments as routing can read them (constants, `$n`, or expressions).
    public var executeArguments: [FunctionCall.Argument]?
    /// `PREPARE name AS statement`: the facts of that statement, which its EXECUTE runs (the PREPARE itself runs
    /// nothing, so its calls are not among this text's).
    public var preparedStatement: QueryFacts? { preparedStatementStorage.first }
    private var preparedStatementStorage: [QueryFacts] = []  // an array, as a struct cannot hold itself

    public init() {}

    /// A statement that sets `search_path`.
    public enum SearchPathChange: Equatable, Sendable {
        /// `SET [SESSION | LOCAL] search_path TO a, b`, `SET SCHEMA 'a'`: the schemas as the server takes them
        /// (each value is one schema, case kept; `'a, b'` is one schema named `a, b`, as in PostgreSQL).
        case set([String])
        /// `SET search_path TO DEFAULT`, `RESET search_path`, `RESET ALL`, `DISCARD ALL`: back to the default.
        case reset
    }

    /// One change of `search_path` and the index of its statement.
    public struct SearchPathStep: Equatable, Sendable {
        public var statement: Int
        public var change: SearchPathChange

        public init(statement: Int, change: SearchPathChange) {
            self.statement = statement
            self.change = change
        }
    }

    /// pgml's functions that an unqualified call can mean: pg_catalog has none of these names but `rank`, whose
    /// window and ordered-set forms the walk leaves out.
    static let pgmlFunctionNames: Set<String> = [
        "embed", "transform", "transform_stream", "rank", "generate", "predict", "predict_proba", "predict_joint",
        "predict_batch", "decompose", "train", "train_joint", "tune", "deploy", "snapshot", "load_dataset",
        "load_all", "dump_all", "chunk",
    ]

    /// What the text means for read/write routing.
    public enum Intent: Equatable, Sendable {
        /// Only reads: a replica may run it.
        case read
        /// Writes, locks, or has effects a replica cannot have: the primary.
        case write
        /// BEGIN / START TRANSACTION: the whole transaction follows; `readOnly` as in `Transaction.begin`.
        case begin(readOnly: Bool?)
        /// Session or transaction control that runs anywhere (SET, SHOW, COMMIT, DISCARD, ...).
        case neutral
    }

    public var intent: Intent {
        if writes { return .write }
        if case .begin(let readOnly)? = begins { return .begin(readOnly: readOnly) }
        if statementKinds.contains(where: Self.dataKinds.contains) { return .read }
        return statementKinds.isEmpty ? .write : .neutral
    }

    /// The intent of this `EXECUTE name(args)` when `name` is the statement of the `PREPARE` whose facts are
    /// `prepare`: the prepared statement's own intent, unless an argument calls a function that writes (arguments
    /// cannot hold subqueries). nil when this is not a single EXECUTE or `prepare` not a PREPARE.
    public func intent(executing prepare: QueryFacts) -> Intent? {
        guard statementKinds == ["ExecuteStmt"], let prepared = prepare.preparedStatement else { return nil }
        let argumentsWrite = functions.contains { name in
            let bare = name.hasPrefix("pg_catalog.") ? String(name.dropFirst("pg_catalog.".count)) : name
            return Self.writeFunctions.contains(bare) || Self.pgmlWriteFunctions.contains(bare)
        }
        return argumentsWrite ? .write : prepared.intent
    }

    /// PostgreSQL's CURSOR_OPT_HOLD in a DeclareCursorStmt's `options`.
    static let cursorOptionHold = 0x0020

    /// Statement kinds that read data (the others in `readKinds` only concern the session or transaction).
    static let dataKinds: Set<String> = ["SelectStmt", "ExplainStmt", "DeclareCursorStmt", "CopyStmt", "FetchStmt"]

    /// PostgresML calls that insert into `pgml.*` tables or run DDL: a standby refuses them (PgCat sends them to
    /// replicas, where they fail).
    static let pgmlWriteFunctions: Set<String> = [
        "pgml.train", "pgml.train_joint", "pgml.tune", "pgml.deploy", "pgml.snapshot", "pgml.load_dataset",
        "pgml.load_all", "pgml.dump_all",
    ]

    /// Statement kinds that only read (or only concern the session), when nothing inside them writes.
    static let readKinds: Set<String> = [
        "SelectStmt", "VariableShowStmt", "ExplainStmt", "DeclareCursorStmt", "FetchStmt", "ClosePortalStmt",
        "VariableSetStmt", "DiscardStmt", "DeallocateStmt", "TransactionStmt", "PrepareStmt",
    ]

    /// Functions with side effects that a replica cannot run, or that must see the primary's session.
    static let writeFunctions: Set<String> = [
        "nextval", "setval", "currval", "lastval",
        "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
        "pg_notify", "txid_current", "pg_current_xact_id", "lo_create", "lo_import", "lo_unlink", "lo_put",
        "lo_from_bytea", "pg_create_restore_point", "pg_switch_wal",
        // Refused during recovery ("cannot assign OIDs", "recovery is in progress"), or writing through a
        // descriptor that only a primary opens for writing.
        "lo_creat", "lo_open", "lowrite", "lo_truncate", "lo_truncate64",
        "pg_current_wal_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_logical_emit_message",
        "pg_create_logical_replication_slot",
    ]
}

extension QueryFacts {
    /// Facts from libpg_query's JSON parse tree (`{"version":..., "stmts":[{"stmt":{...}}, ...]}`).
    init(parseTree root: ParseTreeJSON) {
        self.init()
        var cteNames: Set<String> = []  // CTE references look like tables in the tree
        for entry in root["stmts"]?.arrayValue ?? [] {
            guard case .object(let members)? = entry["stmt"], let first = members.first else { continue }
            let kind = first.key, node = first.value
            statementKinds.append(kind)
            if !Self.readKinds.contains(kind) {
                markWrite(kind)
            }
            switch kind {
            case "TransactionStmt":
                let control = Self.transaction(node)
                transaction = control
                if case .begin = control, begins == nil { begins = control }
            case "CopyStmt":
                if case .bool(true)? = node["is_from"] {
                    markWrite("COPY FROM")
                } else {
                    unmarkIfOnly("CopyStmt")  // COPY ... TO reads
                }
            case "ExplainStmt":
                if !Self.explainAnalyzes(node) {
                    // EXPLAIN without ANALYZE writes nothing, but the planner folds immutable calls with constant
                    // arguments (pgml's inference functions), so the calls it names still count.
                    var inner = QueryFacts()
                    inner.statementKinds = statementKinds  // the calls' statement index is this statement's
                    var innerCTEs: Set<String> = []
                    inner.walk(node, cteNames: &innerCTEs)
                    functions += inner.functions
                    pgmlCalls += inner.pgmlCalls
                    unqualifiedPGMLCalls += inner.unqualifiedPGMLCalls
                    appendRelations(inner.namedRelations)
                    continue
                }
            case "PrepareStmt":
                // PREPARE runs nothing; its EXECUTE is not a read we can see. The relations it names still count.
                if let query = node["query"] {
                    let inner = QueryFacts(parseTree: .object([
                        .init(key: "stmts", value: .array([.object([.init(key: "stmt", value: query)])])),
                    ]))
                    appendRelations(inner.namedRelations)
                    preparedStatementStorage = [inner]
                }
                continue
            case "DeclareCursorStmt":
                // A cursor WITH HOLD outlives its transaction: in transaction mode it pins the client to the server
                // that runs it, which must then take the client's writes too: the primary.
                if case .number(let text)? = node["options"], let options = Int(text), options & Self.cursorOptionHold != 0 {
                    markWrite("DECLARE ... WITH HOLD")
                }
            case "ExecuteStmt":
                executeArguments = (node["params"]?.arrayValue ?? []).map { FunctionCall.value(of: $0) }
            case "VariableSetStmt":
                if let change = Self.searchPathChange(node) {
                    searchPathChanges.append(SearchPathStep(statement: statementKinds.count - 1, change: change))
                }
            case "DiscardStmt":
                if node["target"]?.stringValue == "DISCARD_ALL" {
                    searchPathChanges.append(SearchPathStep(statement: statementKinds.count - 1, change: .reset))
                }
            default:
                break
            }
            if kind == "SelectStmt", statementKinds.count == 1 { select = SelectShape(select: node) }
            collectKeyFacts(kind: kind, node: node)
            walk(node, cteNames: &cteNames)
        }
        tables = tables.filter { !cteNames.contains($0) }  // a CTE referenced by name is not a table
    }

    private mutating func markWrite(_ reason: String) {
        if !writes {
            writes = true
            writeReason = reason
        }
    }

    private mutating func unmarkIfOnly(_ reason: String) {
        if writeReason == reason {
            writes = false
            writeReason = nil
        }
    }

    /// Walks a subtree collecting functions, tables, parameters and anything that writes.
    private mutating func walk(_ node: ParseTreeJSON, cteNames: inout Set<String>) {
        switch node {
        case .object(let members):
            for member in members {
                let key = member.key, value = member.value
                switch key {
                case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt":
                    markWrite(key)
                case "lockingClause":
                    markWrite("FOR UPDATE/SHARE")
                case "intoClause":
                    markWrite("SELECT INTO")
                case "FuncCall":
                    let name = value["funcname"]?.arrayValue.compactMap { $0["String"]?["sval"]?.stringValue }
                        .map { $0.lowercased() }.joined(separator: ".") ?? ""
                    if !name.isEmpty {
                        functions.append(name)
                        if name.hasPrefix("pgml."), var call = FunctionCall(funcCall: value, name: name) {
                            call.statement = statementKinds.count - 1
                            pgmlCalls.append(call)
                        } else if Self.pgmlFunctionNames.contains(name), value["over"] == nil,
                                  value["agg_within_group"] == nil, var call = FunctionCall(funcCall: value, name: name) {
                            call.statement = statementKinds.count - 1
                            unqualifiedPGMLCalls.append(call)
                        }
                        let bare = name.hasPrefix("pg_catalog.") ? String(name.dropFirst("pg_catalog.".count)) : name
                        if Self.writeFunctions.contains(bare) || Self.pgmlWriteFunctions.contains(bare) { markWrite(bare) }
                    }
                case "RangeVar":
                    appendTable(value)
                    if let alias = value["alias"]?["aliasname"]?.stringValue, let table = value["relname"]?.stringValue {
                        aliases[alias] = table
                    }
                case "relation":
                    if value["relname"] != nil { appendTable(value) }  // INSERT/UPDATE/DELETE targets
                case "CommonTableExpr":
                    if let name = value["ctename"]?.stringValue { cteNames.insert(name) }
                case "ParamRef":
                    if case .number(let text)? = value["number"], let number = Int(text) {
                        parameterCount = max(parameterCount, number)
                    }
                default:
                    break
                }
                walk(value, cteNames: &cteNames)
            }
        case .array(let values):
            for value in values { walk(value, cteNames: &cteNames) }
        default:
            break
        }
    }

    private mutating func appendTable(_ node: ParseTreeJSON) {
        guard let name = node["relname"]?.stringValue else { return }
        let qualified = node["schemaname"]?.stringValue.map { "\($0).\(name)" } ?? name
        if !tables.contains(qualified) { tables.append(qualified) }
        if !namedRelations.contains(qualified) { namedRelations.append(qualified) }
    }

    private mutating func appendRelations(_ names: [String]) {
        for name in names where !namedRelations.contains(name) { namedRelations.append(name) }
    }

    private static func transaction(_ node: ParseTreeJSON) -> Transaction {
        switch node["kind"]?.stringValue {
        case "TRANS_STMT_BEGIN", "TRANS_STMT_START":
            var readOnly: Bool?
            var serializable = false
            for option in node["options"]?.arrayValue ?? [] {
                guard let element = option["DefElem"] else { continue }
                switch element["defname"]?.stringValue {
                case "transaction_read_only":
                    if case .number(let value)? = element["arg"]?["A_Const"]?["ival"]?["ival"] {
                        readOnly = value != "0"
                    } else {
                        readOnly = false  // ival 0 is left out of the JSON: READ WRITE
                    }
                case "transaction_isolation":
                    serializable = element["arg"]?["A_Const"]?["sval"]?["sval"]?.stringValue == "serializable"
                default:
                    continue
                }
            }
            // A hot standby refuses SERIALIZABLE (0A000), so such a transaction needs the primary even READ ONLY.
            return .begin(readOnly: serializable && readOnly == true ? false : readOnly)
        case "TRANS_STMT_COMMIT", "TRANS_STMT_COMMIT_PREPARED": return .commit
        case "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_PREPARED": return .rollback
        default: return .other
        }
    }

    private static func searchPathChange(_ node: ParseTreeJSON) -> SearchPathChange? {
        let kind = node["kind"]?.stringValue
        if kind == "VAR_RESET_ALL" { return .reset }
        guard node["name"]?.stringValue?.lowercased() == "search_path" else { return nil }
        switch kind {
        case "VAR_SET_DEFAULT", "VAR_RESET":
            return .reset
        case "VAR_SET_VALUE":
            return .set((node["args"]?.arrayValue ?? []).compactMap { $0["A_Const"]?["sval"]?["sval"]?.stringValue })
        default:
            return nil
        }
    }

    private static func explainAnalyzes(_ node: ParseTreeJSON) -> Bool {
        for option in node["options"]?.arrayValue ?? [] {
            guard let element = option["DefElem"], element["defname"]?.stringValue == "analyze" else { continue }
            if case .bool(false)? = element["arg"]?["Boolean"]?["boolval"] { return false }
            if case .object(let members)? = element["arg"]?["String"], members.contains(where: {
                $0.value.stringValue.map { ["off", "false", "0"].contains($0.lowercased()) } ?? false
            }) { return false }
            return true
        }
        return false
    }
}
