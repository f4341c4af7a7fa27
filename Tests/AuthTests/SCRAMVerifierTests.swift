/// Stored SCRAM verifiers: parsing, printing, and equality with what PostgreSQL 15 stores.

import XCTest
@testable import Auth

final class SCRAMVerifierTests: XCTestCase {
    /// Made by PostgreSQL 15: `SET password_encryption = 'scram-sha-256'; CREATE ROLE alice PASSWORD
    /// 'correct horse battery staple'`, then `SELECT rolpassword FROM pg_authid`.
    static let postgresVerifier = "SCRAM-SHA-256$4096:DvivCQzrbifPJIV4NdH2RQ==$l/O1CPOmw5uzvmlEUACrwgYuRucd34v7aNTJ58jICxY=:V1Nrw4o0OHDdcwB0JbtSrbUmRd8wvcX4zfP64uXpLD0="

    func testParseAndPrintRoundTrip() throws {
        let verifier = try XCTUnwrap(SCRAMVerifier(parsing: Self.postgresVerifier))
        XCTAssertEqual(verifier.iterations, 4096)
        XCTAssertEqual(verifier.salt.count, 16)
        XCTAssertEqual(verifier.stringValue, Self.postgresVerifier)
        XCTAssertEqual(SCRAMVerifier(parsing: verifier.stringValue), verifier)
        XCTAssertTrue(SCRAMVerifier.isVerifier(Self.postgresVerifier))
    }

    func testDerivedVerifierEqualsPostgres() throws {
        let stored = try XCTUnwrap(SCRAMVerifier(parsing: Self.postgresVerifier))
        let derived = SCRAMVerifier.derive(password: "correct horse battery staple", salt: stored.salt, iterations: stored.iterations)
        XCTAssertEqual(derived, stored)
        XCTAssertNotEqual(SCRAMVerifier.derive(password: "correct horse battery stapler", salt: stored.salt, iterations: 4096), stored)
    }

    func testRandomSaltsDiffer() {
        let one = SCRAMVerifier.derive(password: "x", iterations: 1)
        let two = SCRAMVerifier.derive(password: "x", iterations: 1)
        XCTAssertNotEqual(one.salt, two.salt)
        XCTAssertEqual(SCRAMVerifier(parsing: one.stringValue), one)
    }

    func testInvalidVerifiersAreRejected() {
        let key = Base64.encode([UInt8](repeating: 1, count: 32))
        let short = Base64.encode([UInt8](repeating: 1, count: 31))
        let invalid = [
            "", "md53175bce1d3201d16594cebf9d7eb3f9d", "SCRAM-SHA-1$4096:AAAA$\(key):\(key)",
            "SCRAM-SHA-256$4096:AAAA$\(key)", "SCRAM-SHA-256$4096$\(key):\(key)", "SCRAM-SHA-256$4096:AAAA:x$\(key):\(key)",
            "SCRAM-SHA-256$0:AAAA$\(key):\(key)", "SCRAM-SHA-256$-1:AAAA$\(key):\(key)", "SCRAM-SHA-256$x:AAAA$\(key):\(key)",
            "SCRAM-SHA-256$4096:$\(key):\(key)", "SCRAM-SHA-256$4096:AA=A$\(key):\(key)",
            "SCRAM-SHA-256$4096:AAAA$\(short):\(key)", "SCRAM-SHA-256$4096:AAAA$\(key):\(short)",
            "SCRAM-SHA-256$4096:AAAA$\(key):\(key)$", "scram-sha-256$4096:AAAA$\(key):\(key)",
        ]
        for string in invalid {
            XCTAssertNil(SCRAMVerifier(parsing: string), string)
        }
        XCTAssertNotNil(SCRAMVerifier(parsing: "SCRAM-SHA-256$1:AAAA$\(key):\(key)"))
    }
}
