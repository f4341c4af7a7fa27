/// StartupSettings: which startup parameters are settings, which a server must check, and the SQL that applies them.
import PostgresWire
import XCTest
@testable import Pooler

final class StartupSettingsTests: XCTestCase {
    func settings(_ parameters: [(String, String)]) throws -> StartupSettings {
        try StartupSettings(parameters, trackedSpellings: ClientConnection.trackedParameterSpellings)
    }

    func testPlainLoginsHaveNoSettings() throws {
        let s = try settings([("user", "u"), ("database", "d"), ("application_name", "psql"), ("client_encoding", "UTF8")])
        XCTAssertEqual(s.tracked, ["application_name": "psql", "client_encoding": "UTF8"])
        XCTAssertEqual(s.settings, [])
        XCTAssertEqual(s.toCheck, [SessionSetting(name: "client_encoding", value: "UTF8")],
                       "reported parameters are checked too (a bad one would fail every replay, unseen); application_name is not")
    }

    func testOptionsFirstThenThePacketWinsAndNamesIgnoreCase() throws {
        let s = try settings([("options", "-c Statement_Timeout=1 -c timezone=Asia/Tokyo -c work_mem=7MB"),
                              ("statement_timeout", "2"), ("replication", "false")])
        XCTAssertEqual(s.settings, [SessionSetting(name: "statement_timeout", value: "2"),
                                    SessionSetting(name: "work_mem", value: "7MB")])
        XCTAssertEqual(s.tracked, ["TimeZone": "Asia/Tokyo"], "a reported parameter keeps its reported spelling")
        XCTAssertEqual(s.toCheck, [SessionSetting(name: "statement_timeout", value: "2"),
                                   SessionSetting(name: "timezone", value: "Asia/Tokyo"),
                                   SessionSetting(name: "work_mem", value: "7MB")])
    }

    func testApplicationNameIsNeverChecked() throws {
        let s = try settings([("options", "-c application_name=x")])
        XCTAssertEqual(s.tracked, ["application_name": "x"])
        XCTAssertEqual(s.toCheck, [])
    }

    func testBadNamesAndBadOptionsAreRefused() {
        XCTAssertThrowsError(try settings([("options", "-c a;drop=1")])) {
            XCTAssertEqual(($0 as? StartupOptions.Failure)?.state, .invalidName)
        }
        XCTAssertThrowsError(try settings([("bad name", "1")]))
        XCTAssertThrowsError(try settings([("a..b", "1")]))
        for name in [".a", "a.", "", "A", "a-b"] { XCTAssertFalse(StartupSettings.isValidName(name), name) }
        for name in ["a", "my_ext.setting", "a$1", "x.y.z", "é"] { XCTAssertTrue(StartupSettings.isValidName(name), name) }
        XCTAssertThrowsError(try settings([("options", "-B 10")])) {
            XCTAssertEqual(($0 as? StartupOptions.Failure)?.state, .featureNotSupported)
        }
        XCTAssertNoThrow(try settings([("my_ext.some$name", "1")]))
    }

    func testLiteralsReadTheSameWhateverStandardConformingStringsIs() {
        XCTAssertEqual(StartupSettings.literal(#"it's a\b"#), #"E'it''s a\\b'"#)
        XCTAssertEqual(StartupSettings.literal("é😀x"), "E'é😀x'")  // UTF-8, as the statement goes out
        // For a server connection reading another encoding: escapes the server reads as these characters
        XCTAssertEqual(StartupSettings.literal("é😀x", escapingNonASCII: true), #"E'\u00E9\U0001F600x'"#)
        XCTAssertEqual(StartupSettings.identifier("my_ext.name"), #""my_ext"."name""#)
    }

    func testReplayResetsWhatOnlyThePreviousClientHadAndSetsWhatDiffers() {
        let a = SessionSetting(name: "statement_timeout", value: "5s")
        let b = SessionSetting(name: "work_mem", value: "7MB")
        let a2 = SessionSetting(name: "statement_timeout", value: "6s")
        XCTAssertEqual(StartupSettings.replay(from: [a, b], to: [a, b]), "")
        XCTAssertEqual(StartupSettings.replay(from: [], to: []), "")
        XCTAssertEqual(StartupSettings.replay(from: [a, b], to: [a2]),
                       #"RESET "work_mem";SELECT pg_catalog.set_config(E'statement_timeout', E'6s', false);"#)
        XCTAssertEqual(StartupSettings.replay(from: [a], to: []), #"RESET "statement_timeout";"#)
        XCTAssertEqual(StartupSettings.replay(from: [a, b], known: false, to: [a]),
                       #"RESET "work_mem";SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);"#,
                       "values unknown: every wanted one is set again, the rest still reset")
    }

    func testIdleSessionTimeoutIsRefusedInTransactionMode() {
        XCTAssertEqual(StartupSettings.refusalInTransactionMode([SessionSetting(name: "idle_session_timeout", value: "5s")])?.state,
                       .featureNotSupported)
        XCTAssertNil(StartupSettings.refusalInTransactionMode([SessionSetting(name: "idle_session_timeout", value: "0")]))
        XCTAssertNil(StartupSettings.refusalInTransactionMode([SessionSetting(name: "statement_timeout", value: "5s")]))
    }

    func testTheCheckSetsEverythingForOneStatementOnly() {
        XCTAssertEqual(StartupSettings.checkQuery([SessionSetting(name: "a", value: "1"), SessionSetting(name: "b", value: "2")]),
                       "SELECT pg_catalog.set_config(E'a', E'1', true), pg_catalog.set_config(E'b', E'2', true)")
    }
}
