/// ServerStartupStateMachine against a scripted PostgreSQL: trust, cleartext, MD5 and SCRAM-SHA-256 (the server
/// side played by SCRAMServerStateMachine), then ParameterStatus/BackendKeyData until ReadyForQuery; and refusals.

import Auth
import NIOCore
import PostgresWire
import XCTest
@testable import Pooler

final class ServerStartupStateMachineTests: XCTestCase {
    typealias Action = ServerStartupStateMachine.Action

    struct NotSent: Error {}

    static let salt: [UInt8] = Array(100..<116)
    /// What the server stores for alice's password "s3cret" (cheap iteration count: fast PBKDF2).
    static let verifier = SCRAMVerifier.derive(password: "s3cret", salt: salt, iterations: 64)

    func machine(password: String?, clientKey: [UInt8]? = nil, keyCache: SCRAMKeyCache? = nil) -> ServerStartupStateMachine {
        ServerStartupStateMachine(credentials: ServerCredentials(user: "alice", database: "app", password: password,
                                                                 scramClientKey: clientKey), keyCache: keyCache)
    }

    // MARK: backend messages

    func backend(_ body: (inout ByteBuffer) -> Void) -> Frame {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        body(&buffer)
        return (try? Frame.read(from: &buffer))!
    }

    var authenticationOK: Frame { backend { MessageEncoder.authenticationOK(into: &$0) } }
    func authentication(_ code: Int32, _ data: [UInt8] = []) -> Frame {
        backend { MessageEncoder.authentication(code, data: data, into: &$0) }
    }
    func sasl(_ mechanisms: [String]) -> Frame { backend { MessageEncoder.authenticationSASL(mechanisms: mechanisms, into: &$0) } }
    func parameter(_ name: String, _ value: String) -> Frame { backend { MessageEncoder.parameterStatus(name, value, into: &$0) } }
    func keyData(_ pid: Int32, _ secret: Int32) -> Frame {
        backend { MessageEncoder.backendKeyData(BackendKeyData(processID: pid, secretKey: secret), into: &$0) }
    }
    func ready(_ status: TransactionStatus = .idle) -> Frame { backend { MessageEncoder.readyForQuery(status, into: &$0) } }
    func error(_ state: SQLState, _ message: String) -> Frame {
        backend { MessageEncoder.errorResponse(severity: .fatal, state: state, message: message, into: &$0) }
    }

    // MARK: frontend messages

    /// The single `p` message in a `.send` action.
    func sentPassword(_ action: Action, file: StaticString = #filePath, line: UInt = #line) throws -> ByteBuffer {
        guard case .send(var buffer) = action else {
            XCTFail("expected a message, got \(action)", file: file, line: line)
            throw NotSent()
        }
        let frame = try XCTUnwrap(try Frame.read(from: &buffer), file: file, line: line)
        XCTAssertEqual(frame.id, FrontendID.password, file: file, line: line)
        XCTAssertEqual(buffer.readableBytes, 0, file: file, line: line)
        return frame.payload
    }

    func failure(_ action: Action) -> String? {
        if case .fail(let reason) = action { return reason }
        return nil
    }

    /// Plays the rest of a startup after authentication: parameters, key, ReadyForQuery.
    func finishStartup(_ machine: inout ServerStartupStateMachine, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(machine.receive(parameter("server_version", "15.4")), .wait, file: file, line: line)
        XCTAssertEqual(machine.receive(parameter("client_encoding", "UTF8")), .wait, file: file, line: line)
        XCTAssertEqual(machine.receive(keyData(4242, -99)), .wait, file: file, line: line)
        XCTAssertEqual(machine.receive(ready()), .ready(parameters: ["server_version": "15.4", "client_encoding": "UTF8"],
                                                         key: BackendKeyData(processID: 4242, secretKey: -99)),
                       file: file, line: line)
    }

    // MARK: startup message

    func testStartMessageNamesUserDatabaseAndApplication() throws {
        var machine = machine(password: nil)
        guard case .send(var buffer) = machine.start() else { return XCTFail("no startup message") }
        XCTAssertEqual(try StartupPacket.decode(from: &buffer),
                       .startup(parameters: [("user", "alice"), ("database", "app"), ("application_name", "pgcat")]))
        XCTAssertEqual(buffer.readableBytes, 0)
    }

    // MARK: trust

    func testTrust() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        XCTAssertEqual(machine.receive(parameter("server_version", "15.4")), .wait)
        XCTAssertEqual(machine.receive(parameter("TimeZone", "UTC")), .wait)
        XCTAssertEqual(machine.receive(parameter("TimeZone", "Europe/Paris")), .wait)
        XCTAssertEqual(machine.receive(keyData(7, 8)), .wait)
        XCTAssertEqual(machine.receive(backend { MessageEncoder.errorResponse(severity: .notice, state: SQLState("00000"), message: "hi",
                                                                               id: BackendID.noticeResponse, into: &$0) }), .wait)
        XCTAssertEqual(machine.receive(ready()), .ready(parameters: ["server_version": "15.4", "TimeZone": "Europe/Paris"],
                                                         key: BackendKeyData(processID: 7, secretKey: 8)))
    }

    func testReadyWithoutParametersOrKey() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        XCTAssertEqual(machine.receive(ready()), .ready(parameters: [:], key: nil))
    }

    // MARK: cleartext

    func testCleartextPassword() throws {
        var machine = machine(password: "s3cret")
        _ = machine.start()
        let sent = try sentPassword(machine.receive(authentication(AuthenticationCode.cleartextPassword)))
        XCTAssertEqual(try PasswordPayload.password(sent), "s3cret")
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        finishStartup(&machine)
    }

    func testCleartextRefusedWithoutAPlaintextPassword() {
        for password in [nil, MD5Password.storedHash(user: "alice", password: "s3cret"), Self.verifier.stringValue] {
            var machine = machine(password: password)
            _ = machine.start()
            XCTAssertEqual(failure(machine.receive(authentication(AuthenticationCode.cleartextPassword))),
                           "server asks for a cleartext password, but no plaintext password is configured for alice",
                           "\(String(describing: password))")
        }
    }

    // MARK: md5

    func testMD5WithPlaintextAndWithStoredHash() throws {
        for configured in ["s3cret", MD5Password.storedHash(user: "alice", password: "s3cret")] {
            var machine = machine(password: configured)
            _ = machine.start()
            let salt: [UInt8] = [9, 8, 7, 6]
            let sent = try sentPassword(machine.receive(backend { MessageEncoder.authenticationMD5(salt: salt, into: &$0) }))
            let response = try PasswordPayload.password(sent)
            XCTAssertTrue(MD5Password.verify(response: response, user: "alice", configuredPassword: "s3cret", salt: salt))
            XCTAssertEqual(machine.receive(authenticationOK), .wait)
            finishStartup(&machine)
        }
    }

    func testMD5RefusedWithoutPasswordOrWithOnlyASCRAMVerifier() {
        let md5 = backend { MessageEncoder.authenticationMD5(salt: [1, 2, 3, 4], into: &$0) }
        var none = machine(password: nil)
        _ = none.start()
        XCTAssertEqual(failure(none.receive(md5)), "server asks for an MD5 password, but none is configured for alice")
        var scram = machine(password: Self.verifier.stringValue)
        _ = scram.start()
        XCTAssertEqual(failure(scram.receive(md5)), "server asks for MD5, but only a SCRAM verifier is configured for alice")
    }

    // MARK: scram-sha-256

    /// A whole SCRAM login: the machine against SCRAMServerStateMachine holding `verifier`.
    /// With `derivesKeys`, the machine must first ask for PBKDF2 off the event loop (a key cache without these keys).
    func scramLogin(_ machine: inout ServerStartupStateMachine, derivesKeys: Bool = false,
                    file: StaticString = #filePath, line: UInt = #line) throws {
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: AuthNonce.random())
        _ = machine.start()
        let initial = try sentPassword(machine.receive(sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])), file: file, line: line)
        let (mechanism, clientFirst) = try PasswordPayload.saslInitial(initial)
        XCTAssertEqual(mechanism, "SCRAM-SHA-256", file: file, line: line)
        let serverFirst = try server.receiveClientFirst(clientFirst ?? []).get()
        let continueFrame = authentication(AuthenticationCode.saslContinue, serverFirst)
        if derivesKeys {
            XCTAssertEqual(machine.receive(continueFrame), .deriveKeysOffLoop(continueFrame), file: file, line: line)
            machine.precomputeKeys(for: continueFrame)
        }
        let response = try sentPassword(machine.receive(continueFrame), file: file, line: line)
        let serverFinal = try server.receiveClientFinal(PasswordPayload.saslResponse(response)).get()
        XCTAssertEqual(machine.receive(authentication(AuthenticationCode.saslFinal, serverFinal)), .wait, file: file, line: line)
        XCTAssertEqual(machine.receive(authenticationOK), .wait, file: file, line: line)
    }

    func testSCRAMWithPassword() throws {
        var machine = machine(password: "s3cret")
        try scramLogin(&machine)
        finishStartup(&machine)
    }

    func testSCRAMKeysAreCachedAcrossLogins() throws {
        let cache = SCRAMKeyCache()
        for login in 0..<2 {
            var machine = machine(password: "s3cret", keyCache: cache)
            try scramLogin(&machine, derivesKeys: login == 0)  // PBKDF2 once, off the loop; then cached
            finishStartup(&machine)
        }
        XCTAssertEqual(cache.count, 1)
        XCTAssertNotNil(cache.cachedKeys(password: "s3cret", salt: Self.salt, iterations: 64))
    }

    func testSCRAMWithARecoveredClientKeyAndAStoredVerifier() throws {
        let clientKey = SCRAMKeys.derive(password: "s3cret", salt: Self.salt, iterations: 64).clientKey
        for configured in [nil, Self.verifier.stringValue, MD5Password.storedHash(user: "alice", password: "s3cret")] {
            var machine = machine(password: configured, clientKey: clientKey)
            try scramLogin(&machine)
            finishStartup(&machine)
        }
    }

    func testPrecomputeKeysOutsideASCRAMExchangeDoesNothing() {
        let cache = SCRAMKeyCache()
        var machine = machine(password: "s3cret", keyCache: cache)
        _ = machine.start()
        machine.precomputeKeys(for: authentication(AuthenticationCode.saslContinue, Array("r=x,s=AAAA,i=64".utf8)))
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
    }

    func testRecoveredClientKeyNeverAsksForKeyDerivation() throws {
        let clientKey = SCRAMKeys.derive(password: "s3cret", salt: Self.salt, iterations: 64).clientKey
        var machine = machine(password: Self.verifier.stringValue, clientKey: clientKey, keyCache: SCRAMKeyCache())
        try scramLogin(&machine, derivesKeys: false)
        finishStartup(&machine)
    }

    func testSCRAMRefusedWithoutAUsableCredential() {
        for configured in [nil, Self.verifier.stringValue, MD5Password.storedHash(user: "alice", password: "s3cret")] {
            var machine = machine(password: configured)
            _ = machine.start()
            XCTAssertEqual(failure(machine.receive(sasl(["SCRAM-SHA-256"])))?.hasPrefix("server asks for SCRAM, but no usable password"),
                           true, "\(String(describing: configured))")
        }
    }

    func testSCRAMRefusedWhenOnlyUnsupportedMechanismsAreOffered() {
        var machine = machine(password: "s3cret")
        _ = machine.start()
        XCTAssertEqual(failure(machine.receive(sasl(["SCRAM-SHA-256-PLUS"]))),
                       "server offers no supported SASL mechanism: [\"SCRAM-SHA-256-PLUS\"]")
    }

    func testSCRAMWrongPasswordEndsWithTheServersError() throws {
        var machine = machine(password: "guess")
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: AuthNonce.random())
        _ = machine.start()
        let initial = try sentPassword(machine.receive(sasl(["SCRAM-SHA-256"])))
        let serverFirst = try server.receiveClientFirst(try PasswordPayload.saslInitial(initial).data ?? []).get()
        let response = try sentPassword(machine.receive(authentication(AuthenticationCode.saslContinue, serverFirst)))
        guard case .failure = server.receiveClientFinal(PasswordPayload.saslResponse(response)) else {
            return XCTFail("the server accepted a wrong password")
        }
        XCTAssertEqual(machine.receive(error(.invalidPassword, "password authentication failed for user \"alice\"")),
                       .fail("server refused the connection: password authentication failed for user \"alice\" (SQLSTATE 28P01)"))
    }

    func testSCRAMForgedServerSignatureFails() throws {
        var machine = machine(password: "s3cret")
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: AuthNonce.random())
        _ = machine.start()
        let initial = try sentPassword(machine.receive(sasl(["SCRAM-SHA-256"])))
        let serverFirst = try server.receiveClientFirst(try PasswordPayload.saslInitial(initial).data ?? []).get()
        _ = try sentPassword(machine.receive(authentication(AuthenticationCode.saslContinue, serverFirst)))
        let forged = Array("v=\(String(repeating: "A", count: 43))=".utf8)  // a signature of 32 zero bytes
        XCTAssertEqual(failure(machine.receive(authentication(AuthenticationCode.saslFinal, forged)))?
            .hasPrefix("SCRAM server signature check failed"), true)
    }

    func testSCRAMServerErrorInServerFinalFails() throws {
        var machine = machine(password: "s3cret")
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: AuthNonce.random())
        _ = machine.start()
        let initial = try sentPassword(machine.receive(sasl(["SCRAM-SHA-256"])))
        let serverFirst = try server.receiveClientFirst(try PasswordPayload.saslInitial(initial).data ?? []).get()
        _ = try sentPassword(machine.receive(authentication(AuthenticationCode.saslContinue, serverFirst)))
        XCTAssertEqual(failure(machine.receive(authentication(AuthenticationCode.saslFinal, Array("e=invalid-proof".utf8))))?
            .hasPrefix("SCRAM server signature check failed"), true)
    }

    func testSCRAMMalformedServerFirstFails() throws {
        var machine = machine(password: "s3cret")
        _ = machine.start()
        _ = try sentPassword(machine.receive(sasl(["SCRAM-SHA-256"])))
        XCTAssertEqual(failure(machine.receive(authentication(AuthenticationCode.saslContinue, Array("r=nope".utf8))))?
            .hasPrefix("SCRAM exchange with the server failed"), true)
    }

    // MARK: refusals and protocol errors

    func testErrorResponseDuringStartup() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(error(.invalidCatalogName, "database \"app\" does not exist")),
                       .fail("server refused the connection: database \"app\" does not exist (SQLSTATE 3D000)"))
    }

    func testErrorResponseAfterAuthentication() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        XCTAssertEqual(machine.receive(error(.tooManyConnections, "sorry, too many clients already")),
                       .fail("server refused the connection: sorry, too many clients already (SQLSTATE 53300)"))
    }

    func testUnsupportedAuthenticationMethods() {
        for code: Int32 in [2, 7, 8, 9] {  // KerberosV5, GSS, GSSContinue, SSPI
            var machine = machine(password: "s3cret")
            _ = machine.start()
            XCTAssertEqual(machine.receive(authentication(code)), .fail("unsupported authentication method \(code) requested by the server"))
        }
    }

    func testMalformedAuthenticationMessage() {
        var machine = machine(password: "s3cret")
        _ = machine.start()
        XCTAssertEqual(failure(machine.receive(Frame(id: BackendID.authentication, payload: ByteBuffer())))?.contains("malformed"), true)
    }

    func testSASLContinueWithoutSASLFails() {
        var machine = machine(password: "s3cret")
        _ = machine.start()
        XCTAssertEqual(failure(machine.receive(authentication(AuthenticationCode.saslContinue, [1])))?
            .hasPrefix("unexpected authentication request"), true)
    }

    func testReadyForQueryBeforeAuthenticationFails() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(ready()), .fail("ReadyForQuery before authentication finished"))
    }

    func testUnexpectedMessageDuringStartupFails() {
        var machine = machine(password: nil)
        _ = machine.start()
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        XCTAssertEqual(machine.receive(backend { MessageEncoder.commandComplete("SELECT 1", into: &$0) }),
                       .fail("unexpected message 67 during server startup"))
    }

    func testNegotiateProtocolVersionIsTolerated() {
        var machine = machine(password: nil)
        _ = machine.start()
        let negotiate = backend { MessageEncoder.frame(BackendID.negotiateProtocolVersion, into: &$0) { $0.writeMultipleIntegers(Int32(0), Int32(0)) } }
        XCTAssertEqual(machine.receive(negotiate), .wait)
        XCTAssertEqual(machine.receive(authenticationOK), .wait)
        XCTAssertEqual(machine.receive(ready()), .ready(parameters: [:], key: nil))
    }
}
