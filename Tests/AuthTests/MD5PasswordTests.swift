/// PostgreSQL's MD5 password scheme against known values.

import XCTest
@testable import Auth
#if canImport(Crypto)
import Crypto
#endif

final class MD5PasswordTests: XCTestCase {
    let salt: [UInt8] = [0x01, 0x02, 0x03, 0x04]
    /// md5(md5("postgrespostgres") hex + salt), computed with Python's hashlib.
    let expectedResponse = "md568be9ed08db75f318087ab337aaea044"

    func testStoredHashKnownVector() {
        XCTAssertEqual(MD5Password.storedHash(user: "postgres", password: "postgres"), "md53175bce1d3201d16594cebf9d7eb3f9d")
        // Made by PostgreSQL 15: SET password_encryption = 'md5'; CREATE ROLE bob PASSWORD 'postgres'.
        XCTAssertEqual(MD5Password.storedHash(user: "bob", password: "postgres"), "md565170a859842ceb2930dc2fa1454af9d")
    }

    func testClientResponse() {
        XCTAssertEqual(MD5Password.clientResponse(user: "postgres", password: "postgres", salt: salt), expectedResponse)
        XCTAssertEqual(MD5Password.clientResponse(user: "postgres", password: "md53175bce1d3201d16594cebf9d7eb3f9d", salt: salt),
                       expectedResponse, "a stored hash is used directly")
        #if canImport(Crypto)
        let inner = Insecure.MD5.hash(data: Array("postgrespostgres".utf8)).map { String(format2: $0) }.joined()
        let outer = Insecure.MD5.hash(data: Array(inner.utf8) + salt).map { String(format2: $0) }.joined()
        XCTAssertEqual("md5" + outer, expectedResponse)
        #endif
    }

    func testVerify() {
        XCTAssertTrue(MD5Password.verify(response: expectedResponse, user: "postgres", configuredPassword: "postgres", salt: salt))
        XCTAssertTrue(MD5Password.verify(response: expectedResponse, user: "postgres",
                                         configuredPassword: "md53175bce1d3201d16594cebf9d7eb3f9d", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: expectedResponse, user: "postgres", configuredPassword: "wrong", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: expectedResponse, user: "other", configuredPassword: "postgres", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: expectedResponse, user: "postgres", configuredPassword: "postgres", salt: [0, 0, 0, 0]))
        XCTAssertFalse(MD5Password.verify(response: expectedResponse.uppercased(), user: "postgres", configuredPassword: "postgres", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: "", user: "postgres", configuredPassword: "postgres", salt: salt))
        XCTAssertFalse(MD5Password.verify(response: expectedResponse, user: "postgres",
                                          configuredPassword: SCRAMVerifierTests.postgresVerifier, salt: salt))
    }

    func testStoredHashDetection() {
        XCTAssertTrue(MD5Password.isStoredHash("md53175bce1d3201d16594cebf9d7eb3f9d"))
        XCTAssertFalse(MD5Password.isStoredHash("md53175BCE1D3201D16594CEBF9D7EB3F9D"), "PostgreSQL accepts lowercase hex only")
        XCTAssertFalse(MD5Password.isStoredHash("md53175bce1d3201d16594cebf9d7eb3f9"))
        XCTAssertFalse(MD5Password.isStoredHash("md53175bce1d3201d16594cebf9d7eb3f9dd"))
        XCTAssertFalse(MD5Password.isStoredHash("md5 plain password of length 35 ok"))
        // A plaintext password that merely starts with "md5" is hashed like any other.
        XCTAssertEqual(MD5Password.clientResponse(user: "u", password: "md5pass", salt: salt),
                       MD5Password.clientResponse(user: "u", password: MD5Password.storedHash(user: "u", password: "md5pass"), salt: salt))
    }
}

private extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
