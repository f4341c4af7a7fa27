import NIOCore
import PostgresWire
import QueryParser
import XCTest
@testable import Sharding

final class FanOutPlanTests: XCTestCase {
    private func plan(_ sql: String) -> FanOutPlan {
        guard case .success(let facts) = QueryParser.parse(sql) else { XCTFail(sql); return .oneShard }
        return FanOutPlan.decide(facts)
    }

    private func refused(_ sql: String, _ why: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .refuse(let reason) = plan(sql) else {
            return XCTFail("\(sql) not refused: \(plan(sql))", file: file, line: line)
        }
        XCTAssertTrue(reason.contains(why), "\(sql): \(reason)", file: file, line: line)
    }

    func testPlainSelectsFanOutWithTheirOrderAndLimit() {
        XCTAssertEqual(plan("SELECT id, v FROM t WHERE v = 'x'"), .select(SelectShape()))
        XCTAssertEqual(plan("SELECT id, name AS n FROM t ORDER BY id DESC NULLS FIRST, n COLLATE \"C\", 2 LIMIT 5"),
                       .select(SelectShape(orderBy: [
                           .init(column: .name("id"), descending: true, nullsFirst: true),
                           .init(column: .name("n"), collation: "C"),
                           .init(column: .position(2)),
                       ], limit: 5)))
        XCTAssertEqual(plan("SELECT * FROM t ORDER BY t.id LIMIT 0"),
                       .select(SelectShape(orderBy: [.init(column: .name("id"))], limit: 0)))
        XCTAssertEqual(plan("SELECT * FROM t LIMIT ALL"), .select(SelectShape()))
        XCTAssertEqual(plan("SELECT a.x FROM a JOIN b ON a.id = b.id"), .select(SelectShape()))
        XCTAssertEqual(plan("SELECT * FROM t, pg_sleep(1)"), .select(SelectShape()))
    }

    func testStatementsWithoutTablesGoToOneShard() {
        for sql in ["SELECT 1", "SELECT now()", "SHOW search_path", "BEGIN", "COMMIT", "EXPLAIN SELECT * FROM t", ""] {
            XCTAssertEqual(plan(sql), .oneShard, sql)
        }
    }

    func testBroadcasts() {
        for sql in ["CREATE TABLE x (id int)", "ALTER TABLE x ADD COLUMN y int", "DROP TABLE x", "CREATE INDEX ON x (id)",
                    "TRUNCATE x", "SET statement_timeout = 5", "VACUUM x", "GRANT SELECT ON x TO public",
                    "CREATE TABLE y AS SELECT * FROM x"] {
            XCTAssertEqual(plan(sql), .broadcast, sql)
        }
    }

    func testRefusals() {
        refused("SELECT count(*) FROM t", "aggregates")
        refused("SELECT sum(x) FILTER (WHERE y) FROM t", "aggregates")
        refused("SELECT x FROM t GROUP BY x", "GROUP BY")
        refused("SELECT DISTINCT x FROM t", "DISTINCT")
        refused("SELECT DISTINCT ON (x) x FROM t", "DISTINCT")
        refused("SELECT * FROM t OFFSET 3", "OFFSET")
        refused("SELECT * FROM t ORDER BY id FETCH FIRST 3 ROWS WITH TIES", "WITH TIES")
        refused("SELECT * FROM t LIMIT $1", "not a constant")
        refused("SELECT x, rank() OVER (ORDER BY x) FROM t", "window")
        refused("SELECT * FROM t WHERE id IN (SELECT id FROM u)", "subqueries")
        refused("SELECT * FROM (SELECT * FROM t) s", "subqueries")
        refused("WITH s AS (SELECT * FROM t) SELECT * FROM s", "WITH")
        refused("SELECT 1 FROM t UNION ALL SELECT 2 FROM u", "UNION")
        refused("SELECT * FROM t ORDER BY id + 1", "expression")
        refused("SELECT * FROM t FOR UPDATE", "FOR UPDATE")
        refused("SELECT nextval('s') FROM t", "nextval")
        refused("INSERT INTO t VALUES (1)", "INSERT")
        refused("UPDATE t SET x = 1", "UPDATE")
        refused("DELETE FROM t", "DELETE")
        refused("COPY t TO STDOUT", "COPY")
        refused("SELECT 1; SELECT 2", "several statements")
        refused("DO $$ BEGIN END $$", "DO cannot")
        refused("EXECUTE p", "EXECUTE")
    }
}

final class FanOutMergerTests: XCTestCase {
    private func frame(_ id: UInt8, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(id, into: &buffer, body)
        return buffer
    }

    private func rowDescription(_ columns: [(String, UInt32)], tableOID: UInt32 = 1) -> ByteBuffer {
        frame(BackendID.rowDescription) {
            $0.writeInteger(Int16(columns.count))
            for (name, type) in columns {
                $0.writeNullTerminatedString(name)
                $0.writeMultipleIntegers(tableOID, Int16(1), type, Int16(-1), Int32(-1), Int16(0))
            }
        }
    }

    private func dataRow(_ values: [String?]) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.dataRow(values, into: &buffer)
        return buffer
    }

    private func reply(_ columns: [(String, UInt32)], _ rows: [[String?]], tableOID: UInt32 = 1) -> ByteBuffer {
        var out = rowDescription(columns, tableOID: tableOID)
        for row in rows {
            var r = dataRow(row)
            out.writeBuffer(&r)
        }
        MessageEncoder.commandComplete("SELECT \(rows.count)", into: &out)
        MessageEncoder.readyForQuery(.idle, into: &out)
        return out
    }

    /// The rows and command tag of a merged reply.
    private func decode(_ buffer: ByteBuffer) -> (rows: [[String?]], tag: String?, error: String?) {
        var buffer = buffer
        var rows: [[String?]] = []
        var tag: String?
        var error: String?
        while let frame = try! Frame.read(from: &buffer) {
            var payload = frame.payload
            switch frame.id {
            case BackendID.dataRow:
                let count = payload.readInteger(as: Int16.self)!
                rows.append((0..<count).map { _ in
                    let length = payload.readInteger(as: Int32.self)!
                    return length < 0 ? nil : payload.readString(length: Int(length))
                })
            case BackendID.commandComplete:
                tag = payload.readNullTerminatedString()
            case BackendID.errorResponse:
                error = try! ErrorFields.decode(frame.payload).message
            default:
                break
            }
        }
        return (rows, tag, error)
    }

    private func merged(_ replies: [ByteBuffer], _ shape: SelectShape) -> (rows: [[String?]], tag: String?, error: String?) {
        switch FanOutMerger.merge(replies, plan: .select(shape)) {
        case .success(let out): return decode(out)
        case .failure(let failure): return ([], nil, failure.message)
        }
    }

    func testConcatenationAndTag() {
        let columns = [("id", UInt32(20))]
        let result = merged([reply(columns, [["1"], ["4"]]), reply(columns, [], tableOID: 7), reply(columns, [["2"]])],
                            SelectShape())
        XCTAssertEqual(result.rows, [["1"], ["4"], ["2"]])
        XCTAssertEqual(result.tag, "SELECT 3")
    }

    func testOrderByMergesAndLimitCuts() {
        let columns = [("id", UInt32(20)), ("n", UInt32(1700))]
        let shape = SelectShape(orderBy: [.init(column: .name("n"), descending: true), .init(column: .position(1))], limit: 4)
        let result = merged([reply(columns, [["1", "10.5"], ["3", "-2"], ["5", nil]]),
                             reply(columns, [["2", "10.50"], ["4", "9.99"], ["6", "NaN"]])], shape)
        // DESC puts NULL first and NaN above every number; 10.5 = 10.50 falls back to id
        XCTAssertEqual(result.rows, [["5", nil], ["6", "NaN"], ["1", "10.5"], ["2", "10.50"]])
        XCTAssertEqual(result.tag, "SELECT 4")
    }

    func testTimestampsWithOffsetsCompareAsInstants() {
        let columns = [("ts", UInt32(1184))]
        let shape = SelectShape(orderBy: [.init(column: .name("ts"))])
        let result = merged([reply(columns, [["2024-01-01 10:00:00+02"], ["2024-01-01 09:30:00.5+00"]]),
                             reply(columns, [["2024-01-01 09:00:00-01"], ["infinity"], ["-infinity"]])], shape)
        XCTAssertEqual(result.rows.map { $0[0]! }, ["-infinity", "2024-01-01 10:00:00+02", "2024-01-01 09:30:00.5+00",
                                                    "2024-01-01 09:00:00-01", "infinity"])
    }

    func testTextNeedsByteOrderCollation() {
        let columns = [("v", UInt32(25))]
        XCTAssertNotNil(merged([reply(columns, [["b"]]), reply(columns, [["a"]])],
                               SelectShape(orderBy: [.init(column: .name("v"))])).error)
        let ok = merged([reply(columns, [["b"], ["é"]]), reply(columns, [["B"], ["a"]])],
                        SelectShape(orderBy: [.init(column: .name("v"), collation: "C")]))
        XCTAssertEqual(ok.rows.map { $0[0]! }, ["B", "a", "b", "é"])
    }

    func testUnknownOrderColumnsAndTypesAreRefused() {
        let columns = [("id", UInt32(20)), ("j", UInt32(3802))]
        XCTAssertTrue(merged([reply(columns, [])], SelectShape(orderBy: [.init(column: .name("x"))])).error!
            .contains("select list"))
        XCTAssertTrue(merged([reply(columns, [])], SelectShape(orderBy: [.init(column: .name("j"))])).error!
            .contains("type"))
        XCTAssertTrue(merged([reply(columns, [])], SelectShape(orderBy: [.init(column: .position(3))])).error!
            .contains("not an output column"))
    }

    func testDifferentColumnsAreRefused() {
        let result = merged([reply([("id", 20)], [["1"]]), reply([("id", 23)], [["2"]])], SelectShape())
        XCTAssertEqual(result.error, "the shards returned different columns for this query")
    }

    func testTheFirstFailingShardAnswers() {
        var failing = ByteBuffer()
        MessageEncoder.errorResponse(severity: .error, state: SQLState("22012"), message: "division by zero", into: &failing)
        MessageEncoder.readyForQuery(.idle, into: &failing)
        let result = merged([reply([("id", 20)], [["1"]]), failing], SelectShape())
        XCTAssertEqual(result.error, "division by zero")
        XCTAssertTrue(result.rows.isEmpty)
    }

    func testBroadcastGivesShardZerosReply() {
        var first = ByteBuffer()
        MessageEncoder.commandComplete("CREATE TABLE", into: &first)
        MessageEncoder.readyForQuery(.idle, into: &first)
        guard case .success(let out) = FanOutMerger.merge([first, first], plan: .broadcast) else { return XCTFail() }
        XCTAssertEqual(decode(out).tag, "CREATE TABLE")
    }

    func testNumericComparison() {
        func cmp(_ a: String, _ b: String) -> Int { RowOrder.Decimal(a)!.compare(RowOrder.Decimal(b)!) }
        XCTAssertEqual(cmp("10", "9.99"), 1)
        XCTAssertEqual(cmp("-10", "-9.99"), -1)
        XCTAssertEqual(cmp("0.50", ".5"), 0)
        XCTAssertEqual(cmp("-0", "0.000"), 0)
        XCTAssertEqual(cmp("007", "7"), 0)
        XCTAssertEqual(cmp("-Infinity", "-1e9".replacingOccurrences(of: "e9", with: "000000000")), -1)
        XCTAssertEqual(cmp("NaN", "Infinity"), 1)
        XCTAssertNil(RowOrder.Decimal("1e5"))
    }
}
