/// Which client Queries reset settings to their session defaults (after which the pooler sets the login values
/// again): single whole commands only.

import NIOCore
import XCTest
@testable import Pooler

final class SettingsResetTests: XCTestCase {
    func testResetCommands() {
        let cases: [(String, [SettingsReset]?)] = [
            ("RESET ALL", [.all]), ("reset all;", [.all]), ("  DISCARD ALL ;", [.all]), ("discard\nall", [.all]),
            ("RESET TimeZone", [.one("timezone")]), ("reset \"DateStyle\"", [.one("datestyle")]),
            ("reset my.custom_setting", [.one("my.custom_setting")]),
            ("SET timezone TO DEFAULT", [.one("timezone")]),
            ("set session statement_timeout = default;", [.one("statement_timeout")]),
            ("SET TIME ZONE DEFAULT", [.one("timezone")]), ("set time zone local;", [.one("timezone")]),
            ("SET TimeZone=DEFAULT", [.one("timezone")]), ("set statement_timeout =default", [.one("statement_timeout")]),
            ("RESET TIME ZONE", [.one("timezone")]),
            // comments (an ORM's or tracer's) where no literal could hide them
            ("/* app */ RESET ALL", [.all]), ("RESET ALL -- c", [.all]), ("reset all /* a /* nested */ */", [.all]),
            ("-- c\nDISCARD ALL", [.all]), ("SELECT 1 /* ; RESET ALL */", nil), ("/* x */ select 1", nil),
            // a SET alone is no reset
            ("SET TIME ZONE 'UTC'", nil), ("SET timezone TO 'UTC'", nil),
            ("SET LOCAL timezone TO DEFAULT", nil),
            // several statements: asyncpg's pool reset
            ("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;", [.all]),
            ("RESET ALL; SELECT 1", [.all]), ("set x = 1; reset timezone", [.set("x"), .one("timezone")]),
            // a SET after the reset keeps its value (SET LOCAL lasts only the transaction: it does not)
            ("RESET ALL; SET TimeZone TO UTC", [.all, .set("timezone")]),
            ("reset all; set time zone utc; set local datestyle to iso", [.all, .set("timezone")]),
            ("SELECT 'a;b'; RESET ALL", nil), ("SELECT 1; -- RESET ALL", nil), ("SELECT 1; SELECT 2", nil),
            ("RESET SESSION AUTHORIZATION", nil), ("DISCARD PLANS", nil), ("select 'reset all'", nil),
            ("RESET", nil), ("", nil), ("reset \"a\"b\"", nil),
            ("\n RESET ALL", [.all]), ("\tDISCARD ALL", [.all]), ("\r\nset timezone to default", [.one("timezone")]),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(SettingsReset.effects(text: text), expected, text)
            var payload = ByteBufferAllocator().buffer(capacity: 32)
            payload.writeString(text + "\0")
            if let expected {
                XCTAssertTrue(SettingsReset.mightMatch(payload), text)
                XCTAssertEqual(SettingsReset.effects(query: payload), expected, text)
                if !text.contains(";") || text.hasSuffix(";") && text.filter({ $0 == ";" }).count == 1 {
                    // a Parse's text (one command): the in-place look passes it too
                    XCTAssertTrue(SettingsReset.mightMatchStatement(payload, at: payload.readerIndex,
                                                                    length: payload.readableBytes), text)
                    XCTAssertEqual(SettingsReset.effect(ofStatement: text).map { [$0] }, expected, text)
                }
            }
        }
        // One statement (a Parse's text): a SET of a value is remembered too, as what may follow a reset.
        XCTAssertEqual(SettingsReset(statement: "SET TimeZone TO 'UTC'"), .set("timezone"))
        XCTAssertEqual(SettingsReset(statement: "set search_path to a, b"), .set("search_path"))
        XCTAssertNil(SettingsReset(statement: "SET LOCAL TimeZone TO 'UTC'"))
        XCTAssertNil(SettingsReset(statement: "SET ROLE x"))
    }

    func testTheFirstLookSkipsOtherStatements() {
        for text in ["SELECT abalance FROM pgbench_accounts WHERE aid = 1;", "set_config('a', 'b', false)", "resetx",
                     "SELECT 1; SELECT 2", "SELECT 'reset';  ",
                     "discarding", "UPDATE t SET x = 1", "settle"] {
            var payload = ByteBufferAllocator().buffer(capacity: 64)
            payload.writeString(text + "\0")
            XCTAssertFalse(SettingsReset.mightMatch(payload), text)
            XCTAssertFalse(SettingsReset.mightMatchStatement(payload, at: payload.readerIndex,
                                                             length: payload.readableBytes), text)
        }
    }

    func testWhatIsRestoredFollowsTheOrder() {
        XCTAssertTrue(SettingsReset.restores("TimeZone", after: [.all]))
        XCTAssertTrue(SettingsReset.restores("TimeZone", after: [.one("timezone")]))
        XCTAssertFalse(SettingsReset.restores("DateStyle", after: [.one("timezone")]))
        XCTAssertFalse(SettingsReset.restores("TimeZone", after: [.all, .set("timezone")]))
        XCTAssertTrue(SettingsReset.restores("DateStyle", after: [.all, .set("timezone")]))
        XCTAssertTrue(SettingsReset.restores("TimeZone", after: [.set("timezone"), .all]))
        XCTAssertFalse(SettingsReset.restores("TimeZone", after: []))
    }
}
