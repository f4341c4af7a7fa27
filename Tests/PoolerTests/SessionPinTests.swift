import NIOCore
import XCTest

@testable import Pooler

final class SessionPinTests: XCTestCase {
    private func pin(_ sql: String) -> SessionPin? {
        SessionPin.detect(in: ByteBuffer(string: sql))
    }

    func testPinningStatements() {
        XCTAssertEqual(pin("LISTEN jobs"), .listen)
        XCTAssertEqual(pin("  listen \"Jobs\";"), .listen)
        XCTAssertEqual(pin("select pg_advisory_lock(42)"), .advisoryLock)
        XCTAssertEqual(pin("SELECT pg_try_advisory_lock_shared(1, 2)"), .advisoryLock)
        XCTAssertEqual(pin("select x from t where pg_try_advisory_lock(id)"), .advisoryLock)
        XCTAssertEqual(pin("CREATE TEMP TABLE t (id int)"), .temporaryTable)
        XCTAssertEqual(pin("create global temporary table t as select 1"), .temporaryTable)
        XCTAssertEqual(pin("CREATE OR REPLACE TEMP VIEW v AS SELECT 1"), .temporaryTable)
        XCTAssertEqual(pin("select 1 as a into temp table t"), .temporaryTable)
        XCTAssertEqual(pin("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), .holdCursor)
        XCTAssertEqual(pin("declare c no scroll cursor with hold for select 1"), .holdCursor)
        XCTAssertEqual(pin("select 1; /* then */ LISTEN x"), .listen)
        // what the word scan alone missed (exploratory round 27): a lock in a DO block, a quoted function name,
        // a table created in pg_temp by name
        XCTAssertEqual(pin("do $$ begin perform pg_advisory_lock(904); end $$"), .advisoryLock)
        XCTAssertEqual(pin("DO LANGUAGE plpgsql $x$ BEGIN PERFORM PG_TRY_ADVISORY_LOCK(1); END $x$"), .advisoryLock)
        XCTAssertEqual(pin("select \"pg_advisory_lock\"(903)"), .advisoryLock)
        XCTAssertEqual(pin("create table pg_temp.t (a int)"), .temporaryTable)
        XCTAssertEqual(pin("select 1 as a into pg_temp.t"), .temporaryTable)
    }

    func testNonPinningStatements() {
        XCTAssertNil(pin("SELECT 1"))
        XCTAssertNil(pin("select 'LISTEN x'"))
        XCTAssertNil(pin("select \"listen\" from t"))
        XCTAssertNil(pin("-- LISTEN x\nselect 1"))
        XCTAssertNil(pin("/* LISTEN /* nested */ x */ select 1"))
        XCTAssertNil(pin("select $$ pg_advisory_lock(1) $$"))
        XCTAssertNil(pin("select $tag$ LISTEN x $tag$, $1"))
        XCTAssertNil(pin("select E'it\\'s LISTEN x'"))
        XCTAssertNil(pin("select pg_advisory_xact_lock(1)"))
        XCTAssertNil(pin("UNLISTEN *"))
        XCTAssertNil(pin("CREATE TABLE temp (id int)"))
        XCTAssertNil(pin("CREATE TEMP TABLE t (id int) ON COMMIT DROP"))
        XCTAssertNil(pin("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"))
        XCTAssertNil(pin("DECLARE c CURSOR FOR SELECT * FROM with_hold"))
        XCTAssertNil(pin("select template, holder, listener from t"))
        XCTAssertNil(pin("insert into t select * from temp_things"))
        XCTAssertNil(pin("do $$ begin perform pg_advisory_xact_lock(1); end $$"))
        XCTAssertNil(pin("create table pg_temp.t (a int) on commit drop"))
    }

    func testPrefilterIsCaseInsensitive() {
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "LiStEn")))
        XCTAssertFalse(SessionPin.mightPin(ByteBuffer(string: "select abalance from pgbench_accounts where aid = $1")))
    }

    /// The prefilter looks only where the full check could match: whole words, and "advisory" after an underscore.
    func testPrefilterLooksAtWordStartsOnly() {
        XCTAssertFalse(SessionPin.mightPin(ByteBuffer(string: "select relisten, attempt, uphold from t")))
        XCTAssertFalse(SessionPin.mightPin(ByteBuffer(string: "select advisory from t")))
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "select pg_try_ADVISORY_lock(1)")))
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "create temporary table t (a int)")))
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "declare c cursor with hold for select 1")))
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "/*x*/listen ch")))
        XCTAssertTrue(SessionPin.mightPin(ByteBuffer(string: "select 1;temp")))
        XCTAssertNotNil(SessionPin.detect(in: ByteBuffer(string: "select 1;LISTEN ch")))
        XCTAssertEqual(SessionPin.detect(in: ByteBuffer(string: "create 1temp table t (a int)")), .temporaryTable)
    }

    func testSetConfigCallsAreSeenButDoNotPin() {
        for sql in ["select set_config('search_path', 'x', false)", "SELECT pg_catalog.SET_CONFIG('app.t', $1, false)",
                    "select \"set_config\"('role', 'r', false)", "do $$ begin perform set_config('a.b', '1', false); end $$"] {
            let found = SessionPin.inspect(ByteBuffer(string: sql))
            XCTAssertTrue(found.setsConfig, sql)
            XCTAssertNil(found.pin, sql)
        }
        for sql in ["select my_set_config(1)", "select reset_config", "select 1", "select current_setting('a.b')"] {
            XCTAssertFalse(SessionPin.inspect(ByteBuffer(string: sql)).setsConfig, sql)
        }
        let both = SessionPin.inspect(ByteBuffer(string: "select set_config('a.b', '1', false), pg_advisory_lock(1)"))
        XCTAssertEqual(both.pin, .advisoryLock)
        XCTAssertTrue(both.setsConfig)
    }
}
