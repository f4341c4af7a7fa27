/// Every MessageEncoder function read back by its decoder (or by Frame.read when the pooler has no typed decoder).

import NIOCore
import PostgresWire
import XCTest

final class MessageRoundTripTests: XCTestCase {
    func authentication(_ body: (inout ByteBuffer) -> Void) throws -> AuthenticationRequest {
        let frame = try onlyFrame(encoded(body))
        XCTAssertEqual(frame.id, BackendID.authentication)
        return try AuthenticationRequest.decode(frame.payload)
    }

    func nullTerminatedString(_ payload: ByteBuffer) -> String? {
        var payload = payload
        let string = payload.readNullTerminatedString()
        XCTAssertEqual(payload.readableBytes, 0)
        return string
    }

    // MARK: backend -> client

    func testAuthenticationRequests() throws {
        XCTAssertEqual(try authentication { MessageEncoder.authenticationOK(into: &$0) }, .ok)
        XCTAssertEqual(try authentication { MessageEncoder.authentication(AuthenticationCode.cleartextPassword, into: &$0) },
                       .cleartextPassword)
        XCTAssertEqual(try authentication { MessageEncoder.authenticationMD5(salt: [0xDE, 0xAD, 0xBE, 0xEF], into: &$0) },
                       .md5Password(salt: [0xDE, 0xAD, 0xBE, 0xEF]))
        XCTAssertEqual(try authentication { MessageEncoder.authenticationSASL(mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"], into: &$0) },
                       .sasl(mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]))
        XCTAssertEqual(try authentication { MessageEncoder.authenticationSASL(mechanisms: [], into: &$0) }, .sasl(mechanisms: []))
        let data = Array("r=abc,s=c2FsdA==,i=4096".utf8)
        XCTAssertEqual(try authentication { MessageEncoder.authentication(AuthenticationCode.saslContinue, data: data, into: &$0) },
                       .saslContinue(data: data))
        XCTAssertEqual(try authentication { MessageEncoder.authentication(AuthenticationCode.saslFinal, data: [1, 0, 2], into: &$0) },
                       .saslFinal(data: [1, 0, 2]))
        XCTAssertEqual(try authentication { MessageEncoder.authentication(AuthenticationCode.saslFinal, into: &$0) }, .saslFinal(data: []))
        for code: Int32 in [2, 6, 7, 8, 9, -1, 13] {
            XCTAssertEqual(try authentication { MessageEncoder.authentication(code, into: &$0) }, .unsupported(code: code))
        }
    }

    func testAuthenticationOKBytes() {
        XCTAssertEqual(readableBytes(encoded { MessageEncoder.authenticationOK(into: &$0) }), [0x52, 0, 0, 0, 8, 0, 0, 0, 0])
    }

    func testParameterStatus() throws {
        for (name, value) in [("server_version", "15.4"), ("TimeZone", ""), ("application_name", "ünïcødé")] {
            let frame = try onlyFrame(encoded { MessageEncoder.parameterStatus(name, value, into: &$0) })
            XCTAssertEqual(frame.id, BackendID.parameterStatus)
            let status = try ParameterStatus.decode(frame.payload)
            XCTAssertEqual(status.name, name)
            XCTAssertEqual(status.value, value)
        }
    }

    func testBackendKeyData() throws {
        for key in [BackendKeyData(processID: 1234, secretKey: 5678), BackendKeyData(processID: .min, secretKey: -1)] {
            let frame = try onlyFrame(encoded { MessageEncoder.backendKeyData(key, into: &$0) })
            XCTAssertEqual(frame.id, BackendID.backendKeyData)
            XCTAssertEqual(frame.payload.readableBytes, 8)
            XCTAssertEqual(try BackendKeyData.decode(frame.payload), key)
        }
    }

    func testReadyForQuery() throws {
        for status in [TransactionStatus.idle, .inTransaction, .failed] {
            let frame = try onlyFrame(encoded { MessageEncoder.readyForQuery(status, into: &$0) })
            XCTAssertEqual(frame.id, BackendID.readyForQuery)
            XCTAssertEqual(readableBytes(frame.payload).map(TransactionStatus.init(rawValue:)), [status])
        }
    }

    func testErrorResponseWithAllFields() throws {
        let frame = try onlyFrame(encoded {
            MessageEncoder.errorResponse(severity: .fatal, state: .invalidPassword, message: "password authentication failed",
                                         detail: "the detail", hint: "a hint", into: &$0)
        })
        XCTAssertEqual(frame.id, BackendID.errorResponse)
        let fields = try ErrorFields.decode(frame.payload)
        XCTAssertEqual(fields.severity, "FATAL")
        XCTAssertEqual(fields.sqlState, "28P01")
        XCTAssertEqual(fields.message, "password authentication failed")
        XCTAssertEqual(fields, ErrorFields(fields: [
            UInt8(ascii: "S"): "FATAL", UInt8(ascii: "V"): "FATAL", UInt8(ascii: "C"): "28P01",
            UInt8(ascii: "M"): "password authentication failed", UInt8(ascii: "D"): "the detail", UInt8(ascii: "H"): "a hint",
        ]))
    }

    func testNoticeResponseWithoutOptionalFields() throws {
        let frame = try onlyFrame(encoded {
            MessageEncoder.errorResponse(severity: .notice, state: SQLState("00000"), message: "hello",
                                         id: BackendID.noticeResponse, into: &$0)
        })
        XCTAssertEqual(frame.id, BackendID.noticeResponse)
        XCTAssertEqual(try ErrorFields.decode(frame.payload).fields.count, 4)
    }

    func testCommandComplete() throws {
        let frame = try onlyFrame(encoded { MessageEncoder.commandComplete("INSERT 0 1", into: &$0) })
        XCTAssertEqual(frame.id, BackendID.commandComplete)
        XCTAssertEqual(nullTerminatedString(frame.payload), "INSERT 0 1")
    }

    // MARK: frontend -> server

    func testPasswordMessage() throws {
        for password in ["s3cret", "", "md5" + String(repeating: "a", count: 32), "pässwörd"] {
            let frame = try onlyFrame(encoded { MessageEncoder.passwordMessage(password, into: &$0) })
            XCTAssertEqual(frame.id, FrontendID.password)
            XCTAssertEqual(try PasswordPayload.password(frame.payload), password)
        }
    }

    func testSASLInitialResponse() throws {
        for data in [Array("n,,n=,r=abcdef".utf8), [], [0, 255, 0]] {
            let frame = try onlyFrame(encoded { MessageEncoder.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: data, into: &$0) })
            XCTAssertEqual(frame.id, FrontendID.password)
            let decoded = try PasswordPayload.saslInitial(frame.payload)
            XCTAssertEqual(decoded.mechanism, "SCRAM-SHA-256")
            XCTAssertEqual(decoded.data, data)
        }
    }

    func testSASLResponse() throws {
        for data in [Array("c=biws,r=abc,p=xyz".utf8), []] {
            let frame = try onlyFrame(encoded { MessageEncoder.saslResponse(data: data, into: &$0) })
            XCTAssertEqual(frame.id, FrontendID.password)
            XCTAssertEqual(PasswordPayload.saslResponse(frame.payload), data)
        }
    }

    func testQuerySyncTerminateCopyFail() throws {
        let query = try onlyFrame(encoded { MessageEncoder.query("SELECT 'é'", into: &$0) })
        XCTAssertEqual(query.id, FrontendID.query)
        XCTAssertEqual(nullTerminatedString(query.payload), "SELECT 'é'")

        XCTAssertEqual(try onlyFrame(encoded { MessageEncoder.sync(into: &$0) }), Frame(id: FrontendID.sync, payload: buffer([])))
        XCTAssertEqual(try onlyFrame(encoded { MessageEncoder.terminate(into: &$0) }), Frame(id: FrontendID.terminate, payload: buffer([])))

        let copyFail = try onlyFrame(encoded { MessageEncoder.copyFail("client went away", into: &$0) })
        XCTAssertEqual(copyFail.id, FrontendID.copyFail)
        XCTAssertEqual(nullTerminatedString(copyFail.payload), "client went away")
    }

    /// Encoders append: the length they patch in must be relative to where their own frame starts.
    func testEncodersAppendToANonEmptyBuffer() throws {
        var stream = ByteBufferAllocator().buffer(capacity: 8)
        stream.writeBytes([9, 9, 9])
        stream.moveReaderIndex(forwardBy: 3)
        MessageEncoder.authenticationOK(into: &stream)
        MessageEncoder.parameterStatus("a", "b", into: &stream)
        MessageEncoder.backendKeyData(BackendKeyData(processID: 1, secretKey: 2), into: &stream)
        MessageEncoder.readyForQuery(.idle, into: &stream)
        XCTAssertEqual(try Frame.read(from: &stream).map { try AuthenticationRequest.decode($0.payload) }, .ok)
        let status = try XCTUnwrap(try Frame.read(from: &stream).map { try ParameterStatus.decode($0.payload) })
        XCTAssertEqual([status.name, status.value], ["a", "b"])
        XCTAssertEqual(try Frame.read(from: &stream).map { try BackendKeyData.decode($0.payload) }, BackendKeyData(processID: 1, secretKey: 2))
        XCTAssertEqual(try Frame.read(from: &stream)?.id, BackendID.readyForQuery)
        XCTAssertEqual(stream.readableBytes, 0)

        var startup = ByteBufferAllocator().buffer(capacity: 8)
        startup.writeBytes([1, 2])
        startup.moveReaderIndex(forwardBy: 2)
        MessageEncoder.startupMessage(parameters: [("user", "u")], into: &startup)
        XCTAssertEqual(try StartupPacket.decode(from: &startup), .startup(parameters: [("user", "u")]))
    }

    func testGenericFramePatchesTheLength() throws {
        let frame = try onlyFrame(encoded { MessageEncoder.frame(UInt8(ascii: "d"), into: &$0) { $0.writeBytes([1, 2, 3]) } })
        XCTAssertEqual(frame, Frame(id: UInt8(ascii: "d"), payload: buffer([1, 2, 3])))
    }

    func testFrontendIDValidity() {
        for id in "QPBDESHCXdcfFp".utf8 { XCTAssertTrue(FrontendID.isValid(id), "\(id)") }
        for id in "ZRKNTv\0".utf8 { XCTAssertFalse(FrontendID.isValid(id), "\(id)") }
    }
}
