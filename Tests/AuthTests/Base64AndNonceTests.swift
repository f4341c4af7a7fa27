/// The module's own base64 (RFC 4648 vectors, strictness) and its random nonces.

import XCTest
@testable import Auth

final class Base64AndNonceTests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(bytes(plain)), encoded)
            XCTAssertEqual(Base64.decode(encoded), bytes(plain))
        }
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(Base64.decode(Base64.encode(all)), all)
    }

    func testNonCanonicalInputIsRejected() {
        for input in ["Zg", "Zg=", "Zh==", "Zm9=", "Z===", "====", "Zg==Zg==", " Zg==", "Zg==\n", "Zm9v\0", "Zm-v", "Zm_v", "=Zm9"] {
            XCTAssertNil(Base64.decode(input), input)
        }
    }

    func testNonces() {
        let nonce = AuthNonce.random()
        XCTAssertEqual(nonce.utf8.count, 24)
        XCTAssertTrue(SCRAMAttributes.isValidNonce(nonce.utf8))
        XCTAssertNotEqual(nonce, AuthNonce.random())
        XCTAssertEqual(AuthNonce.randomBytes(count: 13).count, 13)
        XCTAssertEqual(AuthNonce.md5Salt().count, 4)
        XCTAssertEqual(AuthNonce.randomBytes(count: 0), [])
    }
}
