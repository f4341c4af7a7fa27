/// PgCat's plugins for one pool, as pure decisions: `query_logger` (log each query text), `table_access` (refuse
/// queries that name a listed table), `intercept` (answer listed queries with a canned result) and `prewarmer` (the
/// statements each new server connection runs first; ConnectionPool+Opening runs them).
///
/// Built once per pool from `PgCatConfig.effectivePlugins(for:)`; nil when no plugin is enabled, so a pool without
/// plugins pays one nil check per relay call. A class: the relay takes it once per call, one retain.
import Config
import NIOCore
import PostgresWire
import QueryParser

final class QueryPlugins: Sendable, Equatable {
    /// `query_logger`: every Query and Parse text is logged (info) with its pool and user.
    let logsQueries: Bool
    /// `table_access`: table names (the last part of a qualified name, as the parser gives it) that are refused.
    let deniedTables: Set<String>
    /// `intercept`: canned results by normalized query text.
    let intercepts: [String: InterceptQuery]
    /// `prewarmer`: simple queries each new server connection runs, in order, before its first use.
    let prewarmQueries: [String]

    init?(_ config: PluginsConfig?) {
        guard let config else { return nil }
        logsQueries = config.queryLogger?.enabled == true
        deniedTables = config.tableAccess.map { $0.enabled ? Set($0.tables) : [] } ?? []
        var intercepts: [String: InterceptQuery] = [:]
        if let intercept = config.intercept, intercept.enabled {
            for query in intercept.queries where intercepts[Self.normalized(query.query)] == nil {
                intercepts[Self.normalized(query.query)] = query  // the first entry for a text wins
            }
        }
        self.intercepts = intercepts
        prewarmQueries = config.prewarmer.map { $0.enabled ? $0.queries : [] } ?? []
        guard logsQueries || !deniedTables.isEmpty || !intercepts.isEmpty || !prewarmQueries.isEmpty else { return nil }
    }

    /// Whether Query and Parse texts need looking at (the prewarmer alone does not).
    var inspectsQueries: Bool { logsQueries || !deniedTables.isEmpty || !intercepts.isEmpty }

    static func == (a: QueryPlugins, b: QueryPlugins) -> Bool {
        a.logsQueries == b.logsQueries && a.deniedTables == b.deniedTables && a.intercepts == b.intercepts
            && a.prewarmQueries == b.prewarmQueries
    }

    enum Verdict: Equatable {
        case pass
        /// `table_access` refuses the text: it names `table`.
        case deny(table: String)
        /// `intercept` answers the text itself.
        case intercept(InterceptQuery)
    }

    /// What the plugins do with a query text: intercept first, then table access (PgCat's order). `facts` parses
    /// the text only when a table list needs it; a text the parser cannot read names no table (the server then
    /// reports its syntax error).
    func verdict(for text: String, facts: (String) -> QueryFacts?) -> Verdict {
        if !intercepts.isEmpty, let canned = intercepts[Self.normalized(text)] { return .intercept(canned) }
        if !deniedTables.isEmpty, let facts = facts(text) {
            for table in facts.namedRelations {
                let name = table.split(separator: ".").last.map(String.init) ?? table
                if deniedTables.contains(name) { return .deny(table: name) }
            }
        }
        return .pass
    }

    /// The message `table_access` gives (as PgCat's), with SQLSTATE 42501 (insufficient_privilege).
    static func denialMessage(_ table: String) -> String { "permission for table \"\(table)\" denied" }

    /// A query text as `intercept` compares it: lower case, runs of white space as one space, no space inside
    /// brackets or before a comma, no trailing semicolons. (PgCat compares its parser's re-serialised text, lower
    /// case; this accepts the same spellings of a query without re-serialising.)
    static func normalized(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for byte in text.lowercased().utf8 {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0x0B, 0x0C:
                pendingSpace = !out.isEmpty
            case 0:
                continue  // the Query message's terminator, if left on
            default:
                let tight = byte == UInt8(ascii: ",") || byte == UInt8(ascii: ")") || out.last == UInt8(ascii: "(")
                if pendingSpace && !tight { out.append(UInt8(ascii: " ")) }
                pendingSpace = false
                out.append(byte)
            }
        }
        while out.last == UInt8(ascii: ";") || out.last == UInt8(ascii: " ") { out.removeLast() }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canned answer to a Query: RowDescription, DataRows (an empty string is NULL; `${USER}` and `${DATABASE}`
    /// are the client's), CommandComplete. The caller adds ReadyForQuery.
    static func interceptReply(_ canned: InterceptQuery, user: String, database: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.rowDescription, into: &buffer) {
            $0.writeInteger(Int16(canned.schema.count))
            for column in canned.schema {
                let (oid, size) = typeOID(column.count > 1 ? column[1] : "text")
                $0.writeNullTerminatedString(column.first ?? "?column?")
                $0.writeMultipleIntegers(Int32(0), Int16(0), oid, size, Int32(-1), Int16(0))
            }
        }
        for row in canned.result {
            let values = row.prefix(canned.schema.count).map { value -> String? in
                value.isEmpty ? nil
                    : value.replacingOccurrences(of: "${USER}", with: user).replacingOccurrences(of: "${DATABASE}", with: database)
            }
            // Short rows are padded with NULLs: a DataRow must have a value per column.
            let padded = values + Array(repeating: nil, count: max(0, canned.schema.count - values.count))
            MessageEncoder.dataRow(padded, into: &buffer)
        }
        MessageEncoder.commandComplete("SELECT \(canned.result.count)", into: &buffer)
        return buffer
    }

    /// PgCat's column types for `intercept` (`text`, `anyarray`, `oid`, `bool`, `int4`; anything else is `any`).
    static func typeOID(_ name: String) -> (oid: Int32, size: Int16) {
        switch name.lowercased() {
        case "text": return (25, -1)
        case "anyarray": return (2277, -1)
        case "oid": return (26, 4)
        case "bool": return (16, 1)
        case "int4": return (23, 4)
        default: return (2276, 4)  // any
        }
    }
}
