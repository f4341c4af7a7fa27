import XCTest
@testable import Pooler

final class AdminCommandTests: XCTestCase {
    private func parse(_ text: String) -> AdminCommand? { try? AdminCommand.parse(text).get() }

    func testShowCommandsAreCaseInsensitiveAndTrimmed() {
        XCTAssertEqual(parse("SHOW POOLS"), .show(.pools))
        XCTAssertEqual(parse("show clients;"), .show(.clients))
        XCTAssertEqual(parse("  Show   Stats ;; "), .show(.stats))
        for show in AdminCommand.Show.allCases {
            XCTAssertEqual(parse("show \(show.rawValue)"), .show(show))
        }
    }

    func testPauseAndResumeSelectors() {
        XCTAssertEqual(parse("PAUSE"), .pause(nil))
        XCTAssertEqual(parse("pause app,alice"), .pause(.init(database: "app", user: "alice")))
        XCTAssertEqual(parse("pause app, alice"), .pause(.init(database: "app", user: "alice")))
        XCTAssertEqual(parse("RESUME app"), .resume(.init(database: "app", user: nil)))
        XCTAssertNil(parse("pause a b c"))
        XCTAssertNil(parse("pause app,"))
    }

    func testBanValidation() {
        XCTAssertEqual(parse("BAN db1 30"), .ban(host: "db1", seconds: 30))
        if case .failure(let e) = AdminCommand.parse("BAN db1") { XCTAssertEqual(e.message, "usage: BAN hostname duration_seconds") } else { XCTFail() }
        if case .failure(let e) = AdminCommand.parse("BAN db1 x") { XCTAssertEqual(e.message, "duration_seconds must be an integer") } else { XCTFail() }
        if case .failure(let e) = AdminCommand.parse("BAN db1 -5") { XCTAssertEqual(e.message, "duration_seconds must be >= 0") } else { XCTFail() }
        if case .failure(let e) = AdminCommand.parse("UNBAN") { XCTAssertEqual(e.message, "UNBAN command requires a hostname to unban") } else { XCTFail() }
    }

    func testOtherCommands() {
        XCTAssertEqual(parse("RELOAD"), .reload)
        XCTAssertEqual(parse("shutdown"), .shutdown)
        XCTAssertEqual(parse("SET client_encoding = 'UTF8'"), .set)
        XCTAssertEqual(parse("RECONNECT"), .reconnect(database: nil))
        XCTAssertEqual(parse("reconnect app"), .reconnect(database: "app"))
        XCTAssertEqual(parse("KILL app"), .kill(database: "app"))
        XCTAssertNil(parse("KILL"))
    }

    func testUnknownCommandsSayUnsupported() {
        guard case .failure(let e) = AdminCommand.parse("SELECT 1") else { return XCTFail() }
        XCTAssertEqual(e.message, "Unsupported query against the admin database")
        XCTAssertTrue(e.unsupported)
        guard case .failure(let show) = AdminCommand.parse("SHOW FDS") else { return XCTFail() }
        XCTAssertEqual(show.message, "Unsupported SHOW query against the admin database")
    }

    func testClientIDFormat() {
        XCTAssertEqual(AdminConsole.clientID(42), "0x0000002A")
        XCTAssertEqual(AdminConsole.clientID(-1), "0xFFFFFFFF")
    }
}
