/// The typed payload decoders on short, unterminated or odd payloads: a typed error or a value, never a crash.

import NIOCore
import PostgresWire
import XCTest

final class PayloadDecoderTests: XCTestCase {
    func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    func testAuthenticationWithoutCode() {
        for bytes in [[], [0], [0, 0, 0]] as [[UInt8]] {
            assertMalformed { () throws(WireError) in try AuthenticationRequest.decode(buffer(bytes)) }
        }
    }

    func testMD5WithoutFullSalt() {
        assertMalformed { () throws(WireError) in try AuthenticationRequest.decode(buffer(int32(5) + [1, 2, 3])) }
    }

    func testSASLMechanismListWithoutTerminator() throws {
        // Not fatal to the decoder: whatever complete names it found are returned.
        XCTAssertEqual(try AuthenticationRequest.decode(buffer(int32(10) + Array("SCRAM-SHA-256\0SCR".utf8))),
                       .sasl(mechanisms: ["SCRAM-SHA-256"]))
    }

    func testDecodingDoesNotConsumeTheCallersBuffer() throws {
        let payload = buffer(int32(5) + [1, 2, 3, 4])
        _ = try AuthenticationRequest.decode(payload)
        XCTAssertEqual(try AuthenticationRequest.decode(payload), .md5Password(salt: [1, 2, 3, 4]))
    }

    func testParameterStatusTruncated() {
        for bytes in ["", "name", "name\0", "name\0value"] {
            assertMalformed { () throws(WireError) in try ParameterStatus.decode(buffer(Array(bytes.utf8))) }
        }
    }

    func testBackendKeyDataTruncated() {
        for count in 0..<8 {
            assertMalformed { () throws(WireError) in try BackendKeyData.decode(buffer(Array(repeating: 1, count: count))) }
        }
    }

    func testErrorFields() throws {
        XCTAssertEqual(try ErrorFields.decode(buffer([])), ErrorFields(fields: [:]))
        XCTAssertEqual(try ErrorFields.decode(buffer([0])), ErrorFields(fields: [:]))
        // A missing final terminator is tolerated; a field value without its NUL is not.
        XCTAssertEqual(try ErrorFields.decode(buffer(Array("MHi\0".utf8))).message, "Hi")
        assertMalformed { () throws(WireError) in try ErrorFields.decode(buffer(Array("SERROR\0MHi".utf8))) }
        assertMalformed { () throws(WireError) in try ErrorFields.decode(buffer(Array("S".utf8))) }
    }

    func testPasswordWithoutTerminator() {
        assertMalformed { () throws(WireError) in try PasswordPayload.password(buffer([])) }
        assertMalformed { () throws(WireError) in try PasswordPayload.password(buffer(Array("secret".utf8))) }
    }

    func testSASLInitialResponseVariants() throws {
        let mechanism = Array("SCRAM-SHA-256\0".utf8)
        let none = try PasswordPayload.saslInitial(buffer(mechanism + int32(-1)))
        XCTAssertEqual(none.mechanism, "SCRAM-SHA-256")
        XCTAssertNil(none.data)
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(mechanism + int32(-2))) }
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(mechanism)) }
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(mechanism + [0, 0])) }
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(mechanism + int32(4) + [1, 2, 3])) }
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(mechanism + int32(.max))) }
        assertMalformed { () throws(WireError) in try PasswordPayload.saslInitial(buffer(Array("SCRAM".utf8))) }
    }

    func testSASLResponseTakesEverything() {
        XCTAssertEqual(PasswordPayload.saslResponse(buffer([])), [])
        XCTAssertEqual(PasswordPayload.saslResponse(buffer([0, 1, 0])), [0, 1, 0])
    }

    func testInvalidUTF8IsRepairedNotFatal() throws {
        let status = try ParameterStatus.decode(buffer([0xFF, 0xFE, 0, 0xC3, 0]))
        XCTAssertEqual(status.name.unicodeScalars.count, 2)
        XCTAssertEqual(status.value, "\u{FFFD}")
    }
}
