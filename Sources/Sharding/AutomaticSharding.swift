/// `automatic_sharding_key: table.column` (PgCat): the shard of a statement from its key condition
/// (`WHERE key = 5`, `key = $1`, `key IN (...)` all on one shard, also in JOIN ... ON) or from the key column of
/// an INSERT's VALUES rows. Rows of one INSERT on different shards are refused (the pooler cannot split a
/// statement); a SELECT/UPDATE/DELETE whose values fall on different shards has no single shard. Pure.
import QueryParser

public enum AutomaticSharding {
    public enum Decision: Equatable, Sendable {
        /// No usable key condition: the client's or the default shard.
        case none
        case shard(Int)
        /// An INSERT whose rows belong on different shards.
        case spansShards([Int])
        /// Statements of one request (a multi-statement Query, a pipelined batch) that belong on different shards.
        case statementsSpanShards([Int])
        /// An UPDATE that sets the sharding key: the row would belong on another shard.
        case updatesKey
        /// The key's value is a `$n` whose Bind has not arrived (Parse, Describe and Flush first, as asyncpg
        /// prepares): routed as `none`, and the Bind decides.
        case awaitsBind
    }

    public struct Key: Equatable, Sendable {
        /// The table, or `*` for any table.
        public var table: String
        public var column: String

        /// `table.column` as in the config (double quotes stripped); nil if malformed.
        public init?(_ text: String) {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
            table = parts[0]
            column = parts[1]
        }
    }

    /// Decides each statement of the text, then the request: the one shard its statements name (statements without
    /// a key go along), or `statementsSpanShards` when they name several.
    /// - Parameters:
    ///   - parameter: the value of `$n` from the Bind, when known.
    ///   - bindArrived: the Bind is there (a `$n` it does not give, as an unsupported binary type, is no key then).
    public static func decide(_ facts: QueryFacts, key: Key, sharder: Sharder, shards: Int, bindArrived: Bool = true,
                              parameter: (Int) -> Int64?) -> Decision {
        combine((0..<max(1, facts.statementKinds.count)).map { statement in
            decide(statement: statement, of: facts, key: key, sharder: sharder, shards: shards, bindArrived: bindArrived,
                   parameter: parameter)
        })
    }

    /// Combines the decisions of several statements (of one text, or of one pipelined batch): the one shard they
    /// name (statements without a key go along), `statementsSpanShards` when they name several, the first refusal.
    public static func combine(_ decisions: [Decision]) -> Decision {
        var found: Set<Int> = []
        var awaitsBind = false
        for decision in decisions {
            switch decision {
            case .none: break
            case .shard(let shard): found.insert(shard)
            case .statementsSpanShards(let shards): found.formUnion(shards)
            case .awaitsBind: awaitsBind = true
            case .spansShards, .updatesKey: return decision
            }
        }
        if found.count > 1 { return .statementsSpanShards(found.sorted()) }
        if let shard = found.first { return .shard(shard) }
        return awaitsBind ? .awaitsBind : .none
    }

    private static func decide(statement: Int, of facts: QueryFacts, key: Key, sharder: Sharder, shards: Int,
                               bindArrived: Bool, parameter: (Int) -> Int64?) -> Decision {
        var awaitsBind = false
        func keyValue(_ argument: FunctionCall.Argument) -> Int64? {
            switch argument {
            case .integer(let value): return value
            case .string(let text): return Int64(text)
            case .parameter(let number):
                let value = parameter(number)
                if value == nil, !bindArrived { awaitsBind = true }
                return value
            case .expression: return nil
            }
        }
        func shard(of values: [FunctionCall.Argument]) -> [Int]? {
            var found: [Int] = []
            for value in values {
                guard let number = keyValue(value) else { return nil }
                found.append(sharder.shard(of: number, shards: shards))
            }
            return found
        }

        if facts.updates.contains(where: { $0.statement == statement && (key.table == "*" || $0.table == key.table)
                                           && $0.columns.contains(key.column) }) {
            return .updatesKey
        }
        if let insert = facts.inserts.first(where: { $0.statement == statement }),
           key.table == "*" || insert.table == key.table, let position = insert.columns.firstIndex(of: key.column) {
            var targets: [Int] = []
            for row in insert.rows {
                guard position < row.count, let rowShards = shard(of: [row[position]]) else {
                    return awaitsBind ? .awaitsBind : .none
                }
                targets += rowShards
            }
            let distinct = Array(Set(targets)).sorted()
            if distinct.count == 1 { return .shard(distinct[0]) }
            return distinct.isEmpty ? .none : .spansShards(distinct)
        }

        var targets: Set<Int> = []
        for condition in facts.keyConditions where condition.statement == statement && condition.column == key.column {
            guard matches(condition, key: key, facts: facts), let found = shard(of: condition.values) else { continue }
            targets.formUnion(found)
        }
        if awaitsBind { return .awaitsBind }  // the Bind may add a shard to those of the constants
        return targets.count == 1 ? .shard(targets.first!) : .none
    }

    /// Whether a condition's column is the key's: its qualifier names the key's table (or an alias of it), or it is
    /// unqualified and the statement names only the key's table (or the key's table is `*`).
    private static func matches(_ condition: ColumnCondition, key: Key, facts: QueryFacts) -> Bool {
        if key.table == "*" { return true }
        if let qualifier = condition.qualifier {
            return qualifier == key.table || facts.aliases[qualifier] == key.table
        }
        let tables = Set(facts.tables.map { $0.split(separator: ".").last.map(String.init) ?? $0 })
        return tables == [key.table]
    }
}

import Foundation
