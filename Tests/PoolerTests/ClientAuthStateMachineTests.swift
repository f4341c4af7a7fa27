/// ClientAuthStateMachine against the Auth module's client side: trust, MD5 and SCRAM-SHA-256 logins, wrong
/// passwords, and unknown users who must see the same challenge as real ones and fail only at the end.

import Auth
import Config
import NIOCore
import PostgresWire
import XCTest
@testable import Pooler

final class ClientAuthStateMachineTests: XCTestCase {
    /// A cheap iteration count keeps PBKDF2 fast; the exchange is the same at 4096.
    static let verifier = SCRAMVerifier.derive(password: "s3cret", salt: Array(0..<16), iterations: 64)
    static let clientKey = SCRAMKeys.derive(password: "s3cret", salt: Array(0..<16), iterations: 64).clientKey

    /// The machine's action as a comparable value, with the Authentication message it sends decoded.
    enum Step: Equatable {
        case send(AuthenticationRequest)
        case authenticated(clientKey: [UInt8]?)
        case sendThenAuthenticated(AuthenticationRequest, clientKey: [UInt8]?)
        case fail(sqlState: String, message: String)
        case undecodable(String)
    }

    func step(_ action: ClientAuthStateMachine.Action) -> Step {
        func request(_ buffer: ByteBuffer) -> AuthenticationRequest? {
            var buffer = buffer
            guard let frame = try? Frame.read(from: &buffer), frame.id == BackendID.authentication, buffer.readableBytes == 0 else {
                return nil
            }
            return try? AuthenticationRequest.decode(frame.payload)
        }
        switch action {
        case .send(let buffer):
            return request(buffer).map(Step.send) ?? .undecodable("\(buffer)")
        case .authenticated(let clientKey):
            return .authenticated(clientKey: clientKey)
        case .sendThenAuthenticated(let buffer, let clientKey):
            return request(buffer).map { .sendThenAuthenticated($0, clientKey: clientKey) } ?? .undecodable("\(buffer)")
        case .fail(let state, let message):
            return .fail(sqlState: state.code, message: message)
        }
    }

    /// The payload of a `p` message as the client would send it.
    func payload(_ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        body(&buffer)
        return (try? Frame.read(from: &buffer))!.payload
    }

    func password(_ value: String) -> ByteBuffer { payload { MessageEncoder.passwordMessage(value, into: &$0) } }

    func saslInitial(_ data: [UInt8], mechanism: String = "SCRAM-SHA-256") -> ByteBuffer {
        payload { MessageEncoder.saslInitialResponse(mechanism: mechanism, data: data, into: &$0) }
    }

    func saslResponse(_ data: [UInt8]) -> ByteBuffer { payload { MessageEncoder.saslResponse(data: data, into: &$0) } }

    func wrongPassword(_ user: String) -> Step {
        .fail(sqlState: "28P01", message: "password authentication failed for user \"\(user)\"")
    }

    func client(_ password: String) -> SCRAMClientStateMachine {
        SCRAMClientStateMachine(credential: .password(password), clientNonce: AuthNonce.random())
    }

    // MARK: trust

    func testTrustAuthenticatesAtOnce() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .trust, password: nil, verifier: nil)
        XCTAssertEqual(step(machine.start()), .authenticated(clientKey: nil))
        XCTAssertEqual(step(machine.receive(password("anything"))), .fail(sqlState: "08P01", message: "unexpected password message"))
    }

    // MARK: md5

    func testMD5WithPlaintextPassword() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        XCTAssertEqual(salt.count, 4)
        let response = MD5Password.clientResponse(user: "alice", password: "s3cret", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), .authenticated(clientKey: nil))
        XCTAssertEqual(step(machine.receive(password(response))), .fail(sqlState: "08P01", message: "unexpected password message"))
    }

    func testMD5WithStoredHash() {
        let stored = MD5Password.storedHash(user: "alice", password: "s3cret")
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: stored, verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let response = MD5Password.clientResponse(user: "alice", password: "s3cret", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), .authenticated(clientKey: nil))
    }

    func testMD5WrongPassword() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let response = MD5Password.clientResponse(user: "alice", password: "guess", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), wrongPassword("alice"))
    }

    func testMD5ResponseToAnotherSaltIsRejected() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let replayed = MD5Password.clientResponse(user: "alice", password: "s3cret", salt: salt.map { $0 &+ 1 })
        XCTAssertEqual(step(machine.receive(password(replayed))), wrongPassword("alice"))
    }

    func testMD5UserNameIsPartOfTheHash() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let response = MD5Password.clientResponse(user: "bob", password: "s3cret", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), wrongPassword("alice"))
    }

    func testMD5WithoutConfiguredPasswordFails() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: nil, verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let response = MD5Password.clientResponse(user: "alice", password: "", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), wrongPassword("alice"))
    }

    func testMD5AgainstAStoredSCRAMVerifierFails() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: Self.verifier.stringValue, verifier: nil)
        guard case .send(.md5Password(let salt)) = step(machine.start()) else { return XCTFail("no MD5 challenge") }
        let response = MD5Password.clientResponse(user: "alice", password: "s3cret", salt: salt)
        XCTAssertEqual(step(machine.receive(password(response))), wrongPassword("alice"))
    }

    func testMD5MalformedPasswordMessageFails() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        _ = machine.start()
        var unterminated = ByteBufferAllocator().buffer(capacity: 8)
        unterminated.writeString("md5abc")
        XCTAssertEqual(step(machine.receive(unterminated)), wrongPassword("alice"))
    }

    // MARK: scram-sha-256

    func testSCRAMLoginRecoversTheClientKey() throws {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var client = client("s3cret")
        XCTAssertEqual(step(machine.start()), .send(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        guard case .send(.saslContinue(let serverFirst)) = step(machine.receive(saslInitial(client.clientFirstMessage()))) else {
            return XCTFail("no server-first-message")
        }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        guard case .sendThenAuthenticated(.saslFinal(let serverFinal), let clientKey) = step(machine.receive(saslResponse(clientFinal))) else {
            return XCTFail("not authenticated")
        }
        XCTAssertNoThrow(try client.receiveServerFinal(serverFinal).get())  // the client accepts our signature
        XCTAssertTrue(client.isAuthenticated)
        XCTAssertEqual(clientKey, Self.clientKey)
        XCTAssertEqual(step(machine.receive(saslResponse(clientFinal))), .fail(sqlState: "08P01", message: "unexpected password message"))
    }

    /// A SASLInitialResponse without data (length -1) gets an empty challenge, as from PostgreSQL; the client's
    /// next message then carries its client-first-message, and the login goes on as usual.
    func testSCRAMWithoutAnInitialResponseGetsAnEmptyChallengeFirst() throws {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var client = client("s3cret")
        XCTAssertEqual(step(machine.start()), .send(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        var noData = ByteBufferAllocator().buffer(capacity: 32)
        noData.writeNullTerminatedString("SCRAM-SHA-256")
        noData.writeInteger(Int32(-1))
        XCTAssertEqual(step(machine.receive(noData)), .send(.saslContinue(data: [])))
        guard case .send(.saslContinue(let serverFirst)) = step(machine.receive(saslResponse(client.clientFirstMessage()))) else {
            return XCTFail("no server-first-message")
        }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        guard case .sendThenAuthenticated(.saslFinal(let serverFinal), let clientKey) = step(machine.receive(saslResponse(clientFinal))) else {
            return XCTFail("not authenticated")
        }
        XCTAssertNoThrow(try client.receiveServerFinal(serverFinal).get())
        XCTAssertEqual(clientKey, Self.clientKey)
    }

    func testSCRAMWrongPassword() throws {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var client = client("guess")
        XCTAssertEqual(step(machine.start()), .send(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        guard case .send(.saslContinue(let serverFirst)) = step(machine.receive(saslInitial(client.clientFirstMessage()))) else {
            return XCTFail("no server-first-message")
        }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        XCTAssertEqual(step(machine.receive(saslResponse(clientFinal))), wrongPassword("alice"))
    }

    /// Runs a SCRAM login with `password` up to the machine's verdict on the client-final-message.
    func scramVerdict(_ machine: inout ClientAuthStateMachine, password: String) throws -> (challenge: Step, verdict: Step) {
        var client = client(password)
        let challenge = step(machine.start())
        guard case .send(.saslContinue(let serverFirst)) = step(machine.receive(saslInitial(client.clientFirstMessage()))) else {
            XCTFail("no server-first-message")
            return (challenge, .undecodable("no server-first-message"))
        }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        return (challenge, step(machine.receive(saslResponse(clientFinal))))
    }

    func testUnknownUserGetsTheSameChallengeAndFailsLikeAWrongPassword() throws {
        var known = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var unknown = ClientAuthStateMachine(user: "mallory", authType: nil, password: nil, verifier: nil)
        let knownRun = try scramVerdict(&known, password: "guess")
        let unknownRun = try scramVerdict(&unknown, password: "s3cret")
        XCTAssertEqual(unknownRun.challenge, knownRun.challenge)
        XCTAssertEqual(unknownRun.verdict, wrongPassword("mallory"))
        XCTAssertEqual(knownRun.verdict, wrongPassword("alice"))
    }

    func testKnownSCRAMUserWithoutVerifierFailsAtTheEnd() throws {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: nil)
        let run = try scramVerdict(&machine, password: "s3cret")
        XCTAssertEqual(run.challenge, .send(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        XCTAssertEqual(run.verdict, wrongPassword("alice"))
    }

    func testSCRAMWithAnotherMechanismIsAProtocolViolation() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var client = client("s3cret")
        _ = machine.start()
        // -PLUS was not offered (no TLS).
        XCTAssertEqual(step(machine.receive(saslInitial(client.clientFirstMessage(), mechanism: "SCRAM-SHA-256-PLUS"))),
                       .fail(sqlState: "08P01", message: "client selected an invalid SASL authentication mechanism"))
    }

    func testPlainPasswordWhereSASLIsExpectedIsAProtocolViolation() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        _ = machine.start()
        XCTAssertEqual(step(machine.receive(password("s3cret"))),
                       .fail(sqlState: "08P01", message: "malformed SASLInitialResponse message"))
    }

    func testMalformedClientFirstMessage() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        _ = machine.start()
        XCTAssertEqual(step(machine.receive(saslInitial(Array("garbage".utf8)))),
                       .fail(sqlState: "08P01",
                             message: "malformed SCRAM message: client-first-message has an invalid channel binding flag"))
    }

    func testTamperedClientFinalMessageFails() throws {
        var machine = ClientAuthStateMachine(user: "alice", authType: .scramSHA256, password: "s3cret", verifier: Self.verifier)
        var client = client("s3cret")
        _ = machine.start()
        guard case .send(.saslContinue(let serverFirst)) = step(machine.receive(saslInitial(client.clientFirstMessage()))) else {
            return XCTFail("no server-first-message")
        }
        var clientFinal = try client.receiveServerFirst(serverFirst).get()
        // c=biws,r=<nonce>,p=<proof>: change one character of the nonce.
        let nonceStart = try XCTUnwrap(clientFinal.firstIndex(of: UInt8(ascii: "r"))) + 2
        clientFinal[nonceStart] = clientFinal[nonceStart] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        // As PostgreSQL 15: "invalid SCRAM response" (Nonce does not match), 08P01.
        XCTAssertEqual(step(machine.receive(saslResponse(clientFinal))),
                       .fail(sqlState: "08P01", message: "invalid SCRAM response: nonce does not match"))
    }

    // MARK: SCRAM-SHA-256-PLUS (over TLS)

    static let certificateHash: [UInt8] = Array(1...32)

    /// A login over TLS: the challenge, and the verdict for `mechanism` with the client's `binding`.
    func tlsLogin(mechanism: String, binding: SCRAMClientStateMachine.ChannelBinding, user: String = "alice",
                  known: Bool = true) throws -> (challenge: Step, verdict: Step) {
        var machine = known
            ? ClientAuthStateMachine(user: user, authType: .scramSHA256, password: "s3cret", verifier: Self.verifier,
                                     channelBinding: Self.certificateHash)
            : ClientAuthStateMachine(user: user, authType: nil, password: nil, verifier: nil,
                                     channelBinding: Self.certificateHash)
        var client = SCRAMClientStateMachine(credential: .password("s3cret"), clientNonce: AuthNonce.random(),
                                             channelBinding: binding)
        let challenge = step(machine.start())
        let first = step(machine.receive(saslInitial(client.clientFirstMessage(), mechanism: mechanism)))
        guard case .send(.saslContinue(let serverFirst)) = first else { return (challenge, first) }
        let clientFinal = try client.receiveServerFirst(serverFirst).get()
        return (challenge, step(machine.receive(saslResponse(clientFinal))))
    }

    func testOverTLSPlusIsOfferedFirstAndABoundLoginSucceeds() throws {
        let run = try tlsLogin(mechanism: "SCRAM-SHA-256-PLUS", binding: .tlsServerEndPoint(Self.certificateHash))
        XCTAssertEqual(run.challenge, .send(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])))
        guard case .sendThenAuthenticated(.saslFinal, let key) = run.verdict else {
            return XCTFail("not authenticated: \(run.verdict)")
        }
        XCTAssertEqual(key, Self.clientKey, "passthrough still gets the ClientKey")
    }

    func testOverTLSAnUnboundLoginStillSucceeds() throws {
        let run = try tlsLogin(mechanism: "SCRAM-SHA-256", binding: .none)
        guard case .sendThenAuthenticated = run.verdict else { return XCTFail("not authenticated: \(run.verdict)") }
    }

    func testABindingToAnotherCertificateIsRefusedWithPostgreSQLsSQLState() throws {
        var other = Self.certificateHash
        other[31] ^= 0xFF
        XCTAssertEqual(try tlsLogin(mechanism: "SCRAM-SHA-256-PLUS", binding: .tlsServerEndPoint(other)).verdict,
                       .fail(sqlState: "28000", message: "SCRAM channel binding check failed"))
        // The same for a user the pooler does not know: the binding is checked before the proof.
        XCTAssertEqual(try tlsLogin(mechanism: "SCRAM-SHA-256-PLUS", binding: .tlsServerEndPoint(other),
                                    user: "mallory", known: false).verdict,
                       .fail(sqlState: "28000", message: "SCRAM channel binding check failed"))
    }

    func testADowngradedClientIsRefused() throws {
        // `y`: the client can bind but saw no -PLUS in the offer (someone in between removed it).
        guard case .fail("28000", let message) = try tlsLogin(mechanism: "SCRAM-SHA-256",
                                                              binding: .supportedButNotOffered).verdict else {
            return XCTFail("a downgrade was accepted")
        }
        XCTAssertTrue(message.hasPrefix("SCRAM channel binding negotiation error"), message)
    }

    func testPasswordMessageBeforeTheChallengeIsAProtocolViolation() {
        var machine = ClientAuthStateMachine(user: "alice", authType: .md5, password: "s3cret", verifier: nil)
        XCTAssertEqual(step(machine.receive(password("s3cret"))), .fail(sqlState: "08P01", message: "unexpected password message"))
    }
}
