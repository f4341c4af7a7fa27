/// StartupOptions: the `options` startup parameter read as PostgreSQL's pg_split_opts and process_postgres_switches
/// read it.

import PostgresWire
import XCTest

final class StartupOptionsTests: XCTestCase {
    func settings(_ options: String) throws -> [String] {
        try StartupOptions.settings(in: options).map { "\($0.name)=\($0.value)" }
    }

    func failure(_ options: String) -> StartupOptions.Failure? {
        do {
            _ = try StartupOptions.settings(in: options)
            return nil
        } catch {
            return error
        }
    }

    func testEveryFormOfASetting() throws {
        XCTAssertEqual(try settings("-c statement_timeout=5s"), ["statement_timeout=5s"])
        XCTAssertEqual(try settings("-cwork_mem=7MB"), ["work_mem=7MB"])
        XCTAssertEqual(try settings("--lock-timeout=4s"), ["lock_timeout=4s"])
        XCTAssertEqual(try settings("  -c a=1\t--b=2 \n -cc=3  "), ["a=1", "b=2", "c=3"])
        XCTAssertEqual(try settings(""), [])
        XCTAssertEqual(try settings("   "), [])
    }

    func testOnlyTheNameHasDashesTurnedIntoUnderscores() throws {
        XCTAssertEqual(try settings("-c my-ext.some-name=a-b=c"), ["my_ext.some_name=a-b=c"])
    }

    func testABackslashKeepsTheNextCharacter() throws {
        XCTAssertEqual(try settings(#"-c search_path=a,\ b"#), ["search_path=a, b"])
        XCTAssertEqual(try settings(#"-c application_name=x\\y"#), [#"application_name=x\y"#])
        XCTAssertEqual(try settings(#"-c\ x=1"#), [" x=1"])  // the name is refused later, as PostgreSQL does
    }

    func testOnlyASCIIWhiteSpaceSeparates() throws {
        XCTAssertEqual(try settings("-c application_name=a\u{00A0}b"), ["application_name=a\u{00A0}b"])
        XCTAssertEqual(try settings("-c a=1\u{0B}-c b=2\u{0C}-c c=3\r"), ["a=1", "b=2", "c=3"])
    }

    func testDoubleDashEndsTheSwitches() throws {
        XCTAssertEqual(try settings("-c a=1 --"), ["a=1"])
        XCTAssertEqual(failure("-c a=1 -- -c b=2")?.state, .syntaxError)
    }

    func testAnEmptyValueIsAValue() throws {
        XCTAssertEqual(try settings("-c search_path="), ["search_path="])
    }

    func testASettingWithoutAValueIs42601() {
        XCTAssertEqual(failure("-c statement_timeout")?.state, .syntaxError)
        XCTAssertEqual(failure("-c statement_timeout")?.message, "-c statement_timeout requires a value")
        XCTAssertEqual(failure("--statement_timeout")?.message, "--statement_timeout requires a value")
        XCTAssertEqual(failure("-c =1")?.state, .syntaxError)
        XCTAssertEqual(failure("-c")?.state, .syntaxError)
    }

    func testAWordThatIsNoSwitchIs42601() {
        XCTAssertEqual(failure("statement_timeout=5")?.state, .syntaxError)
        XCTAssertEqual(failure("-c a=1 stray")?.state, .syntaxError)
        XCTAssertEqual(failure("-")?.state, .syntaxError)
    }

    func testServerSwitchesAreRefusedAsUnsupported() {
        for switchWord in ["-B", "-d", "-e", "-F", "-S", "-s"] {
            XCTAssertEqual(failure("\(switchWord) 100")?.state, .featureNotSupported, switchWord)
        }
    }
}
