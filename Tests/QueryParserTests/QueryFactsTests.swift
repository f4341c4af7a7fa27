import XCTest
@testable import QueryParser

final class QueryFactsTests: XCTestCase {
    private func facts(_ sql: String, file: StaticString = #filePath, line: UInt = #line) -> QueryFacts {
        switch QueryParser.parse(sql) {
        case .success(let facts): return facts
        case .failure(let error):
            XCTFail("\(sql): \(error.message)", file: file, line: line)
            return QueryFacts()
        }
    }

    /// (statement, writes?) — reads may go to a replica, writes must go to the primary.
    private let table: [(String, Bool)] = [
        ("SELECT 1", false),
        ("select * from users where id = $1", false),
        ("SELECT count(*) FROM a JOIN b ON a.id = b.a_id WHERE b.x > 3 GROUP BY a.y HAVING count(*) > 1", false),
        ("WITH t AS (SELECT 1) SELECT * FROM t", false),
        ("SELECT * FROM (SELECT * FROM users) u", false),
        ("SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)", false),
        ("SELECT now(), version(), current_setting('search_path')", false),
        ("SHOW search_path", false),
        ("EXPLAIN SELECT * FROM users", false),
        ("EXPLAIN INSERT INTO users VALUES (1)", false),
        ("EXPLAIN (ANALYZE false) DELETE FROM users", false),
        ("COPY users TO STDOUT", false),
        ("COPY (SELECT * FROM users) TO STDOUT WITH (FORMAT csv)", false),
        ("SET search_path TO public", false),
        ("SET LOCAL statement_timeout = 100", false),
        ("RESET ALL", false),
        ("DISCARD ALL", false),
        ("DEALLOCATE ALL", false),
        ("BEGIN", false),
        ("BEGIN READ ONLY", false),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", false),
        ("COMMIT", false),
        ("ROLLBACK", false),
        ("DECLARE c CURSOR FOR SELECT * FROM users", false),
        ("DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM users", false),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM users", true),  // it pins the session: to the primary
        ("declare c binary scroll cursor with hold for select 1", true),
        ("FETCH 10 FROM c", false),
        ("CLOSE c", false),
        ("PREPARE q(int) AS SELECT $1", false),
        ("SELECT pgml.embed('intfloat/e5-small', 'hello')", false),
        ("SELECT a FROM t1 UNION ALL SELECT b FROM t2", false),
        ("VALUES (1), (2)", false),
        ("INSERT INTO users VALUES (1, 'a')", true),
        ("insert into users select * from staging on conflict do nothing", true),
        ("UPDATE users SET name = 'x' WHERE id = 1", true),
        ("DELETE FROM users WHERE id = 1", true),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v", true),
        ("SELECT * FROM users FOR UPDATE", true),
        ("SELECT * FROM users WHERE id = 1 FOR SHARE SKIP LOCKED", true),
        ("SELECT * FROM users FOR NO KEY UPDATE NOWAIT", true),
        ("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", true),
        ("WITH x AS (UPDATE t SET v = 1 RETURNING id) SELECT * FROM x", true),
        ("SELECT nextval('users_id_seq')", true),
        ("SELECT pg_catalog.setval('s', 10)", true),
        ("select lo_creat(-1)", true),
        ("SELECT pg_current_wal_lsn()", true),
        ("select pg_current_wal_insert_lsn()", true),
        ("SELECT pg_logical_emit_message(true, 'p', 'x')", true),
        ("SELECT pg_last_wal_replay_lsn()", false),
        ("SELECT pg_advisory_lock(1)", true),
        ("SELECT pg_try_advisory_xact_lock(42)", true),
        ("SELECT * INTO new_table FROM users", true),
        ("CREATE TABLE t (id int)", true),
        ("CREATE TEMP TABLE t AS SELECT 1", true),
        ("ALTER TABLE t ADD COLUMN v int", true),
        ("DROP TABLE t", true),
        ("TRUNCATE t", true),
        ("CREATE INDEX CONCURRENTLY i ON t (v)", true),
        ("VACUUM ANALYZE t", true),
        ("GRANT SELECT ON t TO public", true),
        ("COPY users FROM STDIN", true),
        ("EXPLAIN ANALYZE INSERT INTO users VALUES (1)", true),
        ("CALL do_things()", true),
        ("DO $$ BEGIN PERFORM 1; END $$", true),
        ("LISTEN jobs", true),
        ("NOTIFY jobs, 'x'", true),
        ("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", true),
        ("EXECUTE q(1)", true),
        ("REFRESH MATERIALIZED VIEW mv", true),
        ("SELECT 1; INSERT INTO t VALUES (1)", true),
        ("SELECT 1; SELECT 2", false),
        ("SELECT * FROM pgml.train('p', 'classification', 't', 'y')", true),
        ("SELECT * FROM pgml.deploy('p', 'best_score')", true),
        ("SELECT pgml.embed('m', 'x')", false),
    ]

    func testReadWriteTable() {
        XCTAssertGreaterThanOrEqual(table.count, 50)
        for (sql, writes) in table {
            let f = facts(sql)
            XCTAssertEqual(f.writes, writes, "\(sql): \(f.writeReason ?? "read")")
        }
    }

    func testTransactionFacts() {
        XCTAssertEqual(facts("BEGIN").transaction, .begin(readOnly: nil))
        XCTAssertEqual(facts("begin read only").transaction, .begin(readOnly: true))
        XCTAssertEqual(facts("START TRANSACTION READ WRITE").transaction, .begin(readOnly: false))
        XCTAssertEqual(facts("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").transaction, .begin(readOnly: true))
        // a hot standby refuses serializable transactions: the primary's, even READ ONLY
        XCTAssertEqual(facts("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY").transaction, .begin(readOnly: false))
        XCTAssertEqual(facts("START TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE, DEFERRABLE").intent,
                       .begin(readOnly: false))
        XCTAssertEqual(facts("BEGIN ISOLATION LEVEL SERIALIZABLE").transaction, .begin(readOnly: nil))
        XCTAssertEqual(facts("COMMIT").transaction, .commit)
        XCTAssertEqual(facts("END").transaction, .commit)
        XCTAssertEqual(facts("ROLLBACK").transaction, .rollback)
        XCTAssertEqual(facts("SAVEPOINT a").transaction, .other)
        XCTAssertNil(facts("SELECT 1").transaction)
    }

    func testFunctionsTablesAndParameters() {
        let f = facts("""
            WITH docs AS (SELECT body FROM public.documents WHERE id = $2)
            SELECT pgml.embed('intfloat/e5-small', body), lower(x.name) FROM docs, (SELECT name FROM users WHERE id = $1) x
            """)
        XCTAssertEqual(f.functions, ["pgml.embed", "lower"])
        XCTAssertEqual(Set(f.tables), ["public.documents", "users"])
        XCTAssertEqual(f.parameterCount, 2)
        XCTAssertEqual(f.statementKinds, ["SelectStmt"])
        XCTAssertFalse(f.writes)
        XCTAssertEqual(facts("INSERT INTO s.t (a) VALUES ($1)").tables, ["s.t"])
    }

    /// libpg_query 15's JSON leaves out a negative integer's value (as for 0) and writes one beyond int4 as a float:
    /// the values are read again from the text, so a key of -50 is not routed as key 0 (exploratory round 26).
    func testIntegerConstantsKeepTheirSignAndBigintRange() {
        let f = facts("select * from data where id = -50 and b = 4294967296 and c = 0 and d = -1.5 and e = 7"
                      + " and f = -9223372036854775808 and g = - 5 and h = 99999999999999999999 and i = -/*x*/3")
        let values = Dictionary(uniqueKeysWithValues: f.keyConditions.map { ($0.column, $0.values) })
        XCTAssertEqual(values["id"], [.integer(-50)])
        XCTAssertEqual(values["b"], [.integer(4_294_967_296)])
        XCTAssertEqual(values["c"], [.integer(0)])
        XCTAssertNil(values["d"], "not an integer: no key")
        XCTAssertEqual(values["e"], [.integer(7)])
        XCTAssertEqual(values["f"], [.integer(Int64.min)])
        XCTAssertEqual(values["g"], [.integer(-5)])
        XCTAssertNil(values["h"], "beyond int64: no key")
        XCTAssertNil(values["i"], "a minus sign without a readable number: unknown, not 0")
        let signed = facts("select * from data where a = -5::int and b = -1::bigint and c = +1 and d = -(7) and e = - -3")
        let signedValues = Dictionary(uniqueKeysWithValues: signed.keyConditions.map { ($0.column, $0.values) })
        XCTAssertEqual(signedValues["a"], [.integer(-5)])
        XCTAssertEqual(signedValues["b"], [.integer(-1)])
        XCTAssertEqual(signedValues["c"], [.integer(1)])
        XCTAssertEqual(signedValues["d"], [.integer(-7)])
        XCTAssertEqual(signedValues["e"], [.integer(3)])
        let insert = facts("insert into data (id, v) values (-7, 'x'), (-2147483649, 'y'), (0, 'z')")
        XCTAssertEqual(insert.inserts.first?.rows.map { $0.first }, [.integer(-7), .integer(-2_147_483_649), .integer(0)])
        XCTAssertEqual(facts("SELECT pgml.embed(-3, 'x')").pgmlCalls.first?.arguments.first, .integer(-3))
        // Constants the grammar makes up keep their meaning (READ WRITE is transaction_read_only 0).
        XCTAssertEqual(facts("BEGIN READ WRITE").transaction, .begin(readOnly: false))
        XCTAssertEqual(facts("select 1 limit 0").select?.limit, 0)
        XCTAssertEqual(facts("select 1 order by 1 limit 5000000000").select?.limit, 5_000_000_000)
    }

    func testUnparseableTextIsAnError() {
        guard case .failure(let error) = QueryParser.parse("SELEC 1") else { return XCTFail("parsed") }
        XCTAssertTrue(error.message.contains("syntax error"), error.message)
    }

    func testCacheCountsHitsAndMisses() {
        let parser = QueryParser(capacity: 2)
        _ = parser.facts("SELECT 1")
        _ = parser.facts("SELECT 1")
        _ = parser.facts("SELECT 2")
        XCTAssertEqual(parser.cacheStats.hits, 1)
        XCTAssertEqual(parser.cacheStats.misses, 2)
    }

    /// Long texts (bulk INSERTs with their rows inline) are parsed every time and never kept; the texts kept are
    /// bounded in bytes as well as in number.
    func testCacheIsBoundedInBytes() {
        let parser = QueryParser(capacity: 100, byteCapacity: 100, maxCachedTextLength: 40)
        let long = "INSERT INTO t VALUES " + Array(repeating: "(1)", count: 20).joined(separator: ",")
        XCTAssertEqual(parser.facts(long).map(\.intent), .success(.write))
        XCTAssertEqual(parser.facts(long).map(\.intent), .success(.write))
        XCTAssertEqual(parser.cacheStats.misses, 2, "a long text is parsed each time")
        XCTAssertEqual(parser.cachedTexts.count, 0)
        for i in 0..<10 { _ = parser.facts("SELECT \(i) + 100000000") }  // 20 bytes each
        let held = parser.cachedTexts
        XCTAssertLessThanOrEqual(held.bytes, 100)
        XCTAssertEqual(held.bytes, held.count * 20)
        XCTAssertGreaterThan(held.count, 0)
        _ = parser.facts("SELECT 9 + 100000000")
        XCTAssertEqual(parser.cacheStats.hits, 1, "the last text is still held")
    }

    func testJSONReaderHandlesEscapes() throws {
        let value = try ParseTreeJSON.parse(#"{"a":"x\"y\\z\u00e9\n","b":[1,-2.5e3,true,false,null],"c":{}}"#)
        XCTAssertEqual(value["a"]?.stringValue, "x\"y\\zé\n")
        XCTAssertEqual(value["b"], .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null]))
        XCTAssertEqual(value["c"], .object([]))
        XCTAssertThrowsError(try ParseTreeJSON.parse(#"{"a":"#))
        XCTAssertThrowsError(try ParseTreeJSON.parse("[1,]"))
    }

    func testIntent() {
        XCTAssertEqual(facts("SELECT 1").intent, .read)
        XCTAssertEqual(facts("COPY t TO STDOUT").intent, .read)
        XCTAssertEqual(facts("INSERT INTO t VALUES (1)").intent, .write)
        XCTAssertEqual(facts("BEGIN").intent, .begin(readOnly: nil))
        XCTAssertEqual(facts("BEGIN READ ONLY").intent, .begin(readOnly: true))
        XCTAssertEqual(facts("BEGIN; SELECT 1").intent, .begin(readOnly: nil), "the whole transaction follows its BEGIN")
        XCTAssertEqual(facts("BEGIN READ ONLY; SELECT 1; COMMIT").intent, .begin(readOnly: true))
        XCTAssertEqual(facts("BEGIN; INSERT INTO t VALUES (1); COMMIT").intent, .write)
        XCTAssertEqual(facts("SET search_path TO x").intent, .neutral)
        XCTAssertEqual(facts("SHOW search_path").intent, .neutral)
        XCTAssertEqual(facts("COMMIT").intent, .neutral)
        XCTAssertEqual(facts("SELECT 1 FOR UPDATE").intent, .write)
        XCTAssertEqual(facts("").intent, .write, "empty: nothing to go on")
    }

    /// The byte entry point (the relay's) agrees with the String one, counts plain reads, and parses the rest.
    func testSQLExecuteTakesItsPreparedStatementsIntent() {
        let parser = QueryParser()
        let read = "PREPARE r(int) AS SELECT * FROM users WHERE id = $1"
        let write = "PREPARE w(int) AS UPDATE users SET n = n + 1 WHERE id = $1"
        let locking = "prepare l as select * from users for update"
        XCTAssertEqual(parser.intent(execute: "EXECUTE r(1)", prepare: read), .read)
        XCTAssertEqual(parser.intent(execute: "execute r (42)", prepare: read), .read)
        XCTAssertEqual(parser.intent(execute: "EXECUTE w(1)", prepare: write), .write)
        XCTAssertEqual(parser.intent(execute: "EXECUTE l", prepare: locking), .write)
        // An argument that writes makes the whole EXECUTE a write.
        XCTAssertEqual(parser.intent(execute: "EXECUTE r(nextval('s')::int)", prepare: read), .write)
        XCTAssertEqual(parser.intent(execute: "EXECUTE r(pg_catalog.setval('s', 1)::int)", prepare: read), .write)
        XCTAssertEqual(parser.intent(execute: "EXECUTE r(abs(-1))", prepare: read), .read)
        // Not an EXECUTE and a PREPARE: no answer (the caller routes to the primary).
        XCTAssertNil(parser.intent(execute: "EXECUTE r(1); SELECT 1", prepare: read))
        XCTAssertNil(parser.intent(execute: "SELECT 1", prepare: read))
        XCTAssertNil(parser.intent(execute: "EXECUTE r(1)", prepare: "SELECT 1"))
        XCTAssertNil(parser.intent(execute: "EXECUTE r(", prepare: read))
    }

    func testIntentOfBytesAgreesWithText() {
        let parser = QueryParser()
        let texts = ["SELECT abalance FROM pgbench_accounts WHERE aid = 1;", "INSERT INTO t VALUES (1)", "BEGIN READ ONLY",
                     "SELECT 1 FOR UPDATE", "SET search_path TO x", "", "SELECT 'é' AS accent", "not sql at all"]
        for text in texts {
            let fromBytes = Array(text.utf8).withUnsafeBytes { parser.intent(utf8: $0) }
            XCTAssertEqual(fromBytes, QueryParser().intent(text), text)
        }
        XCTAssertEqual(parser.quickReads, 2, "the two plain SELECTs need no parser")
        XCTAssertGreaterThan(parser.cacheStats.misses, 0)
    }
}
