/// `query_logger` never writes a password: the literal after PASSWORD is masked, whatever its form, and nothing else
/// in the text changes.

import XCTest
@testable import Pooler

final class QueryLogRedactionTests: XCTestCase {
    func testPasswordLiteralsAreMasked() {
        let cases: [(String, String)] = [
            ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD '********'"),
            ("create user bob with encrypted password 'it''s secret' valid until 'infinity'",
             "create user bob with encrypted password '********' valid until 'infinity'"),
            ("ALTER USER x PASSWORD E'a\\'b'", "ALTER USER x PASSWORD '********'"),
            ("ALTER USER x PASSWORD U&'d\\0061t'", "ALTER USER x PASSWORD '********'"),
            ("ALTER USER x PASSWORD $$p'w$$", "ALTER USER x PASSWORD '********'"),
            ("ALTER USER x PASSWORD $tag$p$w$tag$; SELECT 1", "ALTER USER x PASSWORD '********'; SELECT 1"),
            ("ALTER USER x PASSWORD /* note */\n  'SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB'",
             "ALTER USER x PASSWORD /* note */\n  '********'"),
            ("alter role a password 'one'; alter role b password 'two'",
             "alter role a password '********'; alter role b password '********'"),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(QueryLogRedaction.redact(text), expected, text)
        }
    }

    func testOtherTextIsLeftAlone() {
        for text in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
            "SELECT 'password' AS word, 'x'",                        // the word inside a literal
            "SELECT \"password\", 'secret' FROM t",                  // a quoted identifier
            "SELECT password_hash, 'x' FROM users",                  // a longer word
            "SELECT 1 -- password 'x'\n, 'kept'",                     // a comment
            "ALTER ROLE app PASSWORD NULL",
            "SELECT $1::text, 'password'",
            "",
        ] {
            XCTAssertEqual(QueryLogRedaction.redact(text), text, text)
        }
    }
}
