import XCTest
@testable import QueryParser

final class QuickReadCheckTests: XCTestCase {
    func testPlainReadsAreRecognised() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48823;",
            "select * from users where id = $1",
            "SELECT 'it''s for you', \"into\" FROM t -- a comment with insert\n",
            "select /* update */ count(*) from t",
            "VALUES (1), (2)",
            "TABLE users",
            "select 1;  ",
        ] {
            XCTAssertTrue(QuickReadCheck.isPlainRead(sql), sql)
        }
    }

    func testAnythingUnsureGoesToTheParser() {
        for sql in [
            "SELECT * FROM t FOR UPDATE", "select * into new_t from t", "SELECT nextval('s')",
            "select pg_advisory_lock(1)", "select pg_try_advisory_xact_lock(1)", "WITH x AS (SELECT 1) SELECT * FROM x",
            "INSERT INTO t VALUES (1)", "select 1; delete from t", "select $$ x $$", "select E'\\''",
            "SELECT substring('abc' from 1 for 2)", "select 'unterminated", "", "   ", "begin",
            "select lo_import('/x')", "select txid_current()", "SELECT * FROM pgml.train('p')",
            "select lo_creat(-1)", "select pg_current_wal_lsn()", "select pg_logical_emit_message(true, 'p', 'x')",
            "select lowrite(0, 'x')",
        ] {
            XCTAssertFalse(QuickReadCheck.isPlainRead(sql), sql)
        }
    }

    /// The shortcut never calls a read what the parser calls a write.
    func testAgreesWithTheParser() {
        for sql in ["SELECT 1", "select a from b where c = 'd'", "select count(*) from x group by y having count(*) > 1",
                    "select * from a join b on a.id = b.id order by 1 limit 10 offset 5"] {
            XCTAssertTrue(QuickReadCheck.isPlainRead(sql))
            guard case .success(let facts) = QueryParser.parse(sql) else { return XCTFail(sql) }
            XCTAssertEqual(facts.intent, .read, sql)
        }
    }
}
