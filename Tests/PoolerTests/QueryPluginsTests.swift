import Config
import NIOCore
import PostgresWire
import QueryParser
import XCTest
@testable import Pooler

/// PgCat's plugins as decisions: which texts are refused, which answered, what the canned answer looks like.
final class QueryPluginsTests: XCTestCase {
    private let parser = QueryParser()

    private func plugins(log: Bool = false, tables: [String] = [], intercept: [InterceptQuery] = [],
                         prewarm: [String] = []) -> QueryPlugins? {
        var config = PluginsConfig()
        config.queryLogger = EnabledPlugin(enabled: log)
        var access = TableAccessPlugin()
        access.enabled = !tables.isEmpty
        access.tables = tables
        config.tableAccess = access
        var canned = InterceptPlugin()
        canned.enabled = !intercept.isEmpty
        canned.queries = intercept
        config.intercept = canned
        var warm = PrewarmerPlugin()
        warm.enabled = !prewarm.isEmpty
        warm.queries = prewarm
        config.prewarmer = warm
        return QueryPlugins(config)
    }

    private func verdict(_ plugins: QueryPlugins, _ text: String) -> QueryPlugins.Verdict {
        plugins.verdict(for: text) { try? self.parser.facts($0).get() }
    }

    func testNothingEnabledIsNoPlugins() {
        XCTAssertNil(QueryPlugins(nil))
        XCTAssertNil(plugins())
        var disabled = PluginsConfig()
        var access = TableAccessPlugin()
        access.tables = ["secrets"]  // listed but not enabled
        disabled.tableAccess = access
        XCTAssertNil(QueryPlugins(disabled))
        XCTAssertEqual(plugins(prewarm: ["select 1"])?.inspectsQueries, false, "the prewarmer alone reads no queries")
        XCTAssertEqual(plugins(log: true)?.inspectsQueries, true)
    }

    func testTableAccessRefusesListedTablesWhereverTheyAreNamed() throws {
        let p = try XCTUnwrap(plugins(tables: ["secrets", "pg_authid"]))
        XCTAssertEqual(verdict(p, "select * from secrets"), .deny(table: "secrets"))
        XCTAssertEqual(verdict(p, "SELECT * FROM public.SECRETS"), .deny(table: "secrets"), "unquoted names fold")
        XCTAssertEqual(verdict(p, "select 1 where exists (select 1 from pg_catalog.pg_authid)"), .deny(table: "pg_authid"))
        XCTAssertEqual(verdict(p, "with s as (select * from secrets) select * from s"), .deny(table: "secrets"))
        XCTAssertEqual(verdict(p, "insert into secrets values (1)"), .deny(table: "secrets"))
        XCTAssertEqual(verdict(p, "select 1; update secrets set v = 2"), .deny(table: "secrets"), "any statement")
        XCTAssertEqual(verdict(p, "PREPARE q AS SELECT * FROM secrets"), .deny(table: "secrets"), "a PREPARE's body")
        XCTAssertEqual(verdict(p, "EXPLAIN SELECT * FROM secrets"), .deny(table: "secrets"))
        XCTAssertEqual(verdict(p, "SELECT * FROM secrets WHERE EXISTS (WITH secrets AS (SELECT 1) SELECT 1 FROM secrets)"),
                       .deny(table: "secrets"), "a CTE of the same name elsewhere does not hide the table")
        XCTAssertEqual(verdict(p, "WITH secrets AS (SELECT 1) SELECT 1; SELECT * FROM secrets"), .deny(table: "secrets"))
        XCTAssertEqual(verdict(p, "select * from \"Secrets\""), .pass, "a quoted name keeps its case, as in Postgres")
        XCTAssertEqual(verdict(p, "select * from secrets_archive"), .pass)
        XCTAssertEqual(verdict(p, "select 'secrets'"), .pass, "a string is not a table")
        XCTAssertEqual(verdict(p, "select * from"), .pass, "a text the parser refuses is the server's to refuse")
    }

    func testInterceptMatchesTheQueryWhateverItsSpacingAndCase() throws {
        let canned = InterceptQuery(query: "select current_database() as a, current_schemas(false) as b",
                                    schema: [["a", "text"], ["b", "anyarray"]],
                                    result: [["${DATABASE}", "{public}"]])
        let p = try XCTUnwrap(plugins(tables: ["secrets"], intercept: [canned]))
        XCTAssertEqual(verdict(p, "SELECT current_database() AS a,\n  current_schemas( false ) AS b;"), .intercept(canned))
        XCTAssertEqual(verdict(p, "select current_database() as a"), .pass)
        XCTAssertEqual(QueryPlugins.normalized("  Select  1 ,2 ;; "), "select 1,2")
    }

    func testTheCannedAnswerIsAResultSet() throws {
        let canned = InterceptQuery(query: "q", schema: [["db", "text"], ["n", "int4"], ["x", "whatever"]],
                                    result: [["${DATABASE}/${USER}", "7", ""], ["a"]])
        var reply = QueryPlugins.interceptReply(canned, user: "alice", database: "app")
        var messages: [(UInt8, ByteBuffer)] = []
        while let id = reply.readInteger(as: UInt8.self), let length = reply.readInteger(as: Int32.self) {
            messages.append((id, reply.readSlice(length: Int(length) - 4)!))
        }
        XCTAssertEqual(messages.map(\.0), [BackendID.rowDescription, BackendID.dataRow, BackendID.dataRow,
                                           BackendID.commandComplete])
        var description = messages[0].1
        XCTAssertEqual(description.readInteger(as: Int16.self), 3)
        XCTAssertEqual(description.readNullTerminatedString(), "db")
        XCTAssertEqual(description.readMultipleIntegers(as: (Int32, Int16, Int32).self)?.2, 25)
        description.moveReaderIndex(forwardBy: 8)
        XCTAssertEqual(description.readNullTerminatedString(), "n")
        XCTAssertEqual(description.readMultipleIntegers(as: (Int32, Int16, Int32).self)?.2, 23)
        description.moveReaderIndex(forwardBy: 8)
        XCTAssertEqual(description.readNullTerminatedString(), "x")
        XCTAssertEqual(description.readMultipleIntegers(as: (Int32, Int16, Int32).self)?.2, 2276, "unknown types are any")

        func values(_ row: ByteBuffer) -> [String?] {
            var row = row
            let count = Int(row.readInteger(as: Int16.self)!)
            return (0..<count).map { _ in
                let length = row.readInteger(as: Int32.self)!
                return length < 0 ? nil : row.readString(length: Int(length))
            }
        }
        XCTAssertEqual(values(messages[1].1), ["app/alice", "7", nil], "empty is NULL; ${USER} and ${DATABASE} filled in")
        XCTAssertEqual(values(messages[2].1), ["a", nil, nil], "a short row is padded with NULLs")
        var tag = messages[3].1
        XCTAssertEqual(tag.readNullTerminatedString(), "SELECT 2")
    }
}
