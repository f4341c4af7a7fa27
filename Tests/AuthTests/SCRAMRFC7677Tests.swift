/// RFC 7677 §3's SCRAM-SHA-256 example, reproduced by both state machines, plus PBKDF2 known answers.

import XCTest
@testable import Auth

final class SCRAMRFC7677Tests: XCTestCase {
    static let clientNonce = "rOprNGfwEbeRWgbNEkqO"
    static let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    static let salt = "W22ZaJ0SNY7soEsUEjb6gQ=="
    static let clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    static let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static let serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    /// Computed independently (Python hashlib/hmac) from "pencil" and the salt above.
    static let verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

    func testClientMachineReproducesTheExample() throws {
        var client = SCRAMClientStateMachine(credential: .password("pencil"), clientNonce: Self.clientNonce, username: "user")
        XCTAssertEqual(text(client.clientFirstMessage()), Self.clientFirst)
        let final = try XCTUnwrap(client.receiveServerFirst(bytes(Self.serverFirst)).value)
        XCTAssertEqual(text(final), Self.clientFinal)
        XCTAssertNotNil(client.receiveServerFinal(bytes(Self.serverFinal)).value)
        XCTAssertTrue(client.isAuthenticated)
    }

    func testServerMachineReproducesTheExample() throws {
        let verifier = SCRAMVerifier.derive(password: "pencil", salt: try XCTUnwrap(Base64.decode(Self.salt)), iterations: 4096)
        XCTAssertEqual(verifier.stringValue, Self.verifier)
        var server = SCRAMServerStateMachine(username: "user", verifier: verifier, serverNonce: Self.serverNonce)
        XCTAssertEqual(server.receiveClientFirst(bytes(Self.clientFirst)).value.map(text), Self.serverFirst)
        XCTAssertNil(server.recoveredClientKey)
        XCTAssertEqual(server.receiveClientFinal(bytes(Self.clientFinal)).value.map(text), Self.serverFinal)
        let keys = SCRAMKeys.derive(password: "pencil", salt: verifier.salt, iterations: 4096)
        XCTAssertEqual(server.recoveredClientKey, keys.clientKey)
        XCTAssertTrue(server.isAuthenticated)
    }

    func testServerMachineAcceptsTheExampleFromAParsedVerifier() throws {
        let verifier = try XCTUnwrap(SCRAMVerifier(parsing: Self.verifier))
        var server = SCRAMServerStateMachine(username: "user", verifier: verifier, serverNonce: Self.serverNonce)
        XCTAssertNotNil(server.receiveClientFirst(bytes(Self.clientFirst)).value)
        XCTAssertEqual(server.receiveClientFinal(bytes(Self.clientFinal)).value.map(text), Self.serverFinal)
    }

    func testClientKeyCredentialReproducesTheExample() throws {
        let keys = SCRAMKeys.derive(password: "pencil", salt: try XCTUnwrap(Base64.decode(Self.salt)), iterations: 4096)
        for serverKey in [keys.serverKey, nil] {
            var client = SCRAMClientStateMachine(credential: .clientKey(clientKey: keys.clientKey, serverKey: serverKey),
                                                 clientNonce: Self.clientNonce, username: "user")
            _ = client.clientFirstMessage()
            XCTAssertEqual(client.receiveServerFirst(bytes(Self.serverFirst)).value.map(text), Self.clientFinal)
            XCTAssertNotNil(client.receiveServerFinal(bytes(Self.serverFinal)).value)
        }
    }

    /// PBKDF2-HMAC-SHA256 known answers (first 32 bytes; the c=1 one is RFC 7914 §11's), checked with Python's hashlib.
    func testPBKDF2KnownAnswers() {
        let cases: [(String, String, Int, String)] = [
            ("passwd", "salt", 1, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"),
            ("password", "salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
            ("password", "salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
            (String(repeating: "p", count: 64), "salt", 2, "da45f9b3e39e006a52e97a707dfbc480b65073637b7289176bf8f8f00628b83c"),
            (String(repeating: "p", count: 100), "salt", 2, "7fb39a0c2291de62231e50ab5f6805b83bab97446d73dccf38114fb21c055427"),
        ]
        for (password, salt, iterations, expected) in cases {
            XCTAssertEqual(Hex.encode(SCRAMCrypto.pbkdf2SHA256(password: bytes(password), salt: bytes(salt), iterations: iterations)),
                           expected, "\(password)/\(salt)/\(iterations)")
        }
    }

    /// Non-ASCII passwords are used as their UTF-8 bytes (see `SCRAMCrypto.saslPrep`); this one is already NFKC,
    /// so PostgreSQL derives the same keys.
    func testNonASCIIPasswordIsUsedAsUTF8() {
        XCTAssertEqual(SCRAMCrypto.saslPrep("pässwörd"), Array("pässwörd".utf8))
        XCTAssertEqual(Hex.encode(SCRAMCrypto.pbkdf2SHA256(password: SCRAMCrypto.saslPrep("pässwörd"), salt: bytes("salt"), iterations: 2)),
                       "516c4cfbf60066dc5769ae6ce3c06aae67841d34869ff951588a1f3f8847d652")
    }

    func testClientFirstMessageHasAnEmptyUserNameByDefault() {
        var client = SCRAMClientStateMachine(credential: .password("x"), clientNonce: "abc")
        XCTAssertEqual(text(client.clientFirstMessage()), "n,,n=,r=abc")
        var named = SCRAMClientStateMachine(credential: .password("x"), clientNonce: "abc", username: "a,b=c")
        XCTAssertEqual(text(named.clientFirstMessage()), "n,,n=a=2Cb=3Dc,r=abc")
    }

    /// Not a pass/fail timing: prints the cost of one derivation at PostgreSQL's default iteration count.
    func testPBKDF2CostIsLogged() {
        let clock = ContinuousClock()
        let runs = 5
        let elapsed = clock.measure {
            for run in 0..<runs {
                _ = SCRAMKeys.derive(password: "secret\(run)", salt: Array(repeating: UInt8(run), count: 16), iterations: 4096)
            }
        }
        print("PBKDF2-HMAC-SHA256, 4096 iterations: \(elapsed / runs) per derivation (this build's configuration)")
    }
}
