import XCTest

@testable import Pooler

final class AuthQueryTests: XCTestCase {
    func testQuotedPlaceholderBecomesAnEscapedLiteral() {
        let statements = AuthQuery.statements(query: "SELECT usename, passwd FROM pg_shadow WHERE usename='$1'",
                                              user: "o'brien' OR '1'='1")
        XCTAssertEqual(statements[0].sql,
                       "SELECT usename, passwd FROM pg_shadow WHERE usename='o''brien'' OR ''1''=''1'")
        XCTAssertEqual(statements[0].parameters, [])
    }

    func testBarePlaceholderIsBound() {
        let statements = AuthQuery.statements(query: "SELECT * FROM lookup($1)", user: "alice")
        XCTAssertEqual(statements[0], AuthQuery.Statement(sql: "SELECT * FROM lookup($1)", parameters: ["alice"]))
        // $10 is not $1
        XCTAssertEqual(AuthQuery.statements(query: "SELECT $10", user: "a")[0].parameters, [])
    }

    func testValidityIsAlwaysChecked() {
        let statements = AuthQuery.statements(query: "SELECT 'a', 'b'", user: "bob")
        XCTAssertEqual(statements.count, 2)
        XCTAssertTrue(statements[1].sql.contains("pg_catalog.pg_roles"))
        XCTAssertEqual(statements[1].parameters, ["bob"])
    }

    func testLookupConnectionPinsTheSearchPath() {
        XCTAssertTrue(AuthQuery.connectionParameters.contains { $0 == ("search_path", "pg_catalog") })
    }

    func testInterpretation() {
        let ok: [[String?]] = [["t", "f"]]
        XCTAssertEqual(AuthQuery.interpret(user: "u", lookup: [["u", "md5abc"]], validity: ok), .secret("md5abc"))
        func refused(_ outcome: AuthQuery.Outcome) -> Bool {
            if case .refused = outcome { return true }
            return false
        }
        XCTAssertTrue(refused(AuthQuery.interpret(user: "u", lookup: [], validity: ok)))
        XCTAssertTrue(refused(AuthQuery.interpret(user: "u", lookup: [["u", "x"], ["u", "y"]], validity: ok)))
        XCTAssertEqual(AuthQuery.interpret(user: "u", lookup: [["v", "x"]], validity: ok),
                       .refused(reason: "auth_query returned a row for another user"))
        XCTAssertEqual(AuthQuery.interpret(user: "u", lookup: [[nil, nil]], validity: ok),
                       .refused(reason: "auth_query found no such user"), "a lookup function's row of NULLs")
        XCTAssertTrue(refused(AuthQuery.interpret(user: "u", lookup: [["u", nil]], validity: ok)))
        XCTAssertTrue(refused(AuthQuery.interpret(user: "u", lookup: [["u"]], validity: ok)))
        XCTAssertTrue(refused(AuthQuery.interpret(user: "u", lookup: [["u", "x"]], validity: [])))
        XCTAssertEqual(AuthQuery.interpret(user: "u", lookup: [["u", "x"]], validity: [["t", "t"]]),
                       .refused(reason: "the role's password has expired (VALID UNTIL)"))
        XCTAssertEqual(AuthQuery.interpret(user: "u", lookup: [["u", "x"]], validity: [["f", "f"]]),
                       .refused(reason: "the role cannot log in (NOLOGIN)"))
    }
}
