/// Client machine against server machine: passwords, stored verifiers, recovered ClientKeys, failures.

import XCTest
@testable import Auth

final class SCRAMExchangeTests: XCTestCase {
    /// A cheap iteration count keeps these tests fast; the RFC test covers 4096.
    static let verifier = SCRAMVerifier.derive(password: "s3cret", salt: Array(0..<16), iterations: 64)

    enum Outcome: Equatable {
        case success(clientKey: [UInt8])
        case serverRejected(SCRAMError)
        case clientRejected(SCRAMError)
    }

    /// Runs a whole exchange, each side with fresh nonces.
    func exchange(_ client: inout SCRAMClientStateMachine, _ server: inout SCRAMServerStateMachine) -> Outcome {
        guard let serverFirst = server.receiveClientFirst(client.clientFirstMessage()).value else {
            preconditionFailure("client-first rejected")
        }
        let clientFinal: [UInt8]
        switch client.receiveServerFirst(serverFirst) {
        case .success(let message): clientFinal = message
        case .failure(let error): return .clientRejected(error)
        }
        let serverFinal: [UInt8]
        switch server.receiveClientFinal(clientFinal) {
        case .success(let message): serverFinal = message
        case .failure(let error): return .serverRejected(error)
        }
        if case .failure(let error) = client.receiveServerFinal(serverFinal) { return .clientRejected(error) }
        return .success(clientKey: server.recoveredClientKey!)
    }

    func makeServer(_ verifier: SCRAMVerifier?, user: String = "alice") -> SCRAMServerStateMachine {
        SCRAMServerStateMachine(username: user, verifier: verifier, serverNonce: AuthNonce.random())
    }

    func makeClient(_ credential: SCRAMClientStateMachine.Credential, cache: SCRAMKeyCache? = nil) -> SCRAMClientStateMachine {
        SCRAMClientStateMachine(credential: credential, clientNonce: AuthNonce.random(), saltedPasswordCache: cache)
    }

    func testPasswordAgainstVerifierDerivedFromPlaintext() {
        let verifier = SCRAMVerifier.derive(password: "s3cret", iterations: 64)
        XCTAssertEqual(verifier.salt.count, 16)
        var client = makeClient(.password("s3cret"))
        var server = makeServer(verifier)
        let outcome = exchange(&client, &server)
        XCTAssertEqual(outcome, .success(clientKey: SCRAMKeys.derive(password: "s3cret", salt: verifier.salt, iterations: 64).clientKey))
        XCTAssertTrue(client.isAuthenticated)
    }

    func testPasswordAgainstStoredVerifierString() throws {
        let stored = try XCTUnwrap(SCRAMVerifier(parsing: Self.verifier.stringValue))
        var client = makeClient(.password("s3cret"))
        var server = makeServer(stored)
        guard case .success = exchange(&client, &server) else { return XCTFail("exchange failed") }
    }

    func testRecoveredClientKeyLogsInToAServerHoldingTheSameVerifier() throws {
        var client = makeClient(.password("s3cret"))
        var pooler = makeServer(Self.verifier)
        guard case .success(let clientKey) = exchange(&client, &pooler) else { return XCTFail("first login failed") }

        // The pooler now logs in to "PostgreSQL" (another server machine with the same verifier) as that user,
        // with and without the ServerKey to check the server's signature.
        for serverKey in [Self.verifier.serverKey, nil] {
            var upstreamClient = makeClient(.clientKey(clientKey: clientKey, serverKey: serverKey))
            var postgres = makeServer(Self.verifier)
            XCTAssertEqual(exchange(&upstreamClient, &postgres), .success(clientKey: clientKey))
        }
    }

    func testClientKeyWithWrongServerKeyRejectsTheServerSignature() {
        let clientKey = SCRAMKeys.derive(password: "s3cret", salt: Self.verifier.salt, iterations: 64).clientKey
        var client = makeClient(.clientKey(clientKey: clientKey, serverKey: Array(repeating: 7, count: 32)))
        var server = makeServer(Self.verifier)
        XCTAssertEqual(exchange(&client, &server), .clientRejected(.serverSignatureMismatch))
        XCTAssertFalse(client.isAuthenticated)
    }

    func testWrongPasswordFailsWithInvalidProof() {
        var client = makeClient(.password("wrong"))
        var server = makeServer(Self.verifier)
        XCTAssertEqual(exchange(&client, &server), .serverRejected(.invalidProof))
        XCTAssertNil(server.recoveredClientKey)
    }

    func testUnknownUserRunsTheExchangeAndFailsAtTheEndLikeAWrongPassword() throws {
        var server = makeServer(nil, user: "mallory")
        var client = makeClient(.password("anything"))
        let serverFirst = try XCTUnwrap(server.receiveClientFirst(client.clientFirstMessage()).value)
        let parsed = try XCTUnwrap(SCRAMServerFirst.parse(serverFirst, clientNonce: Array(serverFirst.dropFirst(2).prefix(24))).value)
        XCTAssertEqual(parsed.salt.count, SCRAMVerifier.defaultSaltLength)
        XCTAssertEqual(parsed.iterations, 4096)
        let clientFinal = try XCTUnwrap(client.receiveServerFirst(serverFirst).value)
        XCTAssertEqual(server.receiveClientFinal(clientFinal).error, .invalidProof)
        XCTAssertNil(server.recoveredClientKey)
    }

    func testFakeSaltIsStablePerUsernameAndSecret() {
        func salt(_ user: String, secret: [UInt8]? = nil) -> [UInt8] {
            var server = SCRAMServerStateMachine(username: user, verifier: nil, serverNonce: "srv", mockSecret: secret)
            let serverFirst = server.receiveClientFirst(bytes("n,,n=,r=abc")).value!
            return SCRAMServerFirst.parse(serverFirst, clientNonce: bytes("abc")).value!.salt
        }
        XCTAssertEqual(salt("mallory"), salt("mallory"))
        XCTAssertNotEqual(salt("mallory"), salt("trudy"))
        XCTAssertEqual(salt("mallory", secret: [1, 2, 3]), salt("mallory", secret: [1, 2, 3]))
        XCTAssertNotEqual(salt("mallory", secret: [1, 2, 3]), salt("mallory", secret: [4, 5, 6]))
    }

    func testChannelBindingFlagYIsAcceptedAndMustBeRepeated() throws {
        let keys = SCRAMKeys.derive(password: "s3cret", salt: Self.verifier.salt, iterations: 64)
        for (cbind, expected) in [("eSws", nil), ("biws", SCRAMError.channelBindingMismatch)] as [(String, SCRAMError?)] {
            var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: "srv")
            let serverFirst = try XCTUnwrap(server.receiveClientFirst(bytes("y,,n=,r=cli")).value)
            let withoutProof = bytes("c=\(cbind),r=clisrv")
            let authMessage = bytes("n=,r=cli,") + serverFirst + bytes(",") + withoutProof
            let proof = ConstantTime.xor(keys.clientKey, SCRAMCrypto.hmac(key: keys.storedKey, authMessage))
            let result = server.receiveClientFinal(withoutProof + bytes(",p=") + Base64.encodeToBytes(proof))
            XCTAssertEqual(result.error, expected)
        }
    }

    func testServerErrorAndTamperedSignatureAreReported() throws {
        for (final, expected) in [("e=invalid-proof", SCRAMError.serverError("invalid-proof")),
                                  ("v=" + Base64.encode([UInt8](repeating: 0, count: 32)), .serverSignatureMismatch)] {
            var client = makeClient(.password("s3cret"))
            var server = makeServer(Self.verifier)
            let serverFirst = try XCTUnwrap(server.receiveClientFirst(client.clientFirstMessage()).value)
            _ = try XCTUnwrap(client.receiveServerFirst(serverFirst).value)
            XCTAssertEqual(client.receiveServerFinal(bytes(final)).error, expected)
            XCTAssertFalse(client.isAuthenticated)
        }
    }

    func testMessagesOutOfOrderAreRejected() throws {
        var server = makeServer(Self.verifier)
        XCTAssertEqual(server.receiveClientFinal(bytes("c=biws,r=x,p=x")).error, .unexpectedMessage)
        XCTAssertEqual(server.receiveClientFirst(bytes("n,,n=,r=abc")).error, .unexpectedMessage, "a failed machine stays failed")

        var client = makeClient(.password("s3cret"))
        XCTAssertEqual(client.receiveServerFirst(bytes("r=x,s=AAAA,i=1")).error, .unexpectedMessage)
        client = makeClient(.password("s3cret"))
        let first = client.clientFirstMessage()
        XCTAssertEqual(client.clientFirstMessage(), first, "asking again gives the same message")
        XCTAssertEqual(client.receiveServerFinal(bytes("v=x")).error, .unexpectedMessage)
    }

    func testKeyCacheAvoidsRepeatedDerivation() throws {
        let cache = SCRAMKeyCache(capacity: 4)
        for round in 0..<3 {
            var client = makeClient(.password("s3cret"), cache: cache)
            var server = makeServer(Self.verifier)
            let serverFirst = try XCTUnwrap(server.receiveClientFirst(client.clientFirstMessage()).value)
            XCTAssertEqual(client.needsKeyDerivation(forServerFirst: serverFirst), round == 0)
            let clientFinal = try XCTUnwrap(client.receiveServerFirst(serverFirst).value)
            XCTAssertNotNil(client.receiveServerFinal(try XCTUnwrap(server.receiveClientFinal(clientFinal).value)).value)
        }
        XCTAssertEqual(cache.count, 1)
        var withoutCache = SCRAMClientStateMachine(credential: .password("s3cret"), clientNonce: "x")
        _ = withoutCache.clientFirstMessage()
        XCTAssertTrue(withoutCache.needsKeyDerivation(forServerFirst: bytes("r=xy,s=AAAA,i=1")))
        XCTAssertTrue(withoutCache.needsKeyDerivation(forServerFirst: bytes("r=x,s=AAAA,i=1")) == false,
                      "a server-first that cannot be for this client never needs derivation")
        let keyClient = makeClient(.clientKey(clientKey: [], serverKey: nil))
        XCTAssertFalse(keyClient.needsKeyDerivation(forServerFirst: bytes("r=x,s=AAAA,i=1")))
    }

    func testKeyCacheEvictsTheLeastRecentlyUsedEntry() {
        let cache = SCRAMKeyCache(capacity: 2)
        let a = cache.keys(password: "a", salt: [1], iterations: 1)
        _ = cache.keys(password: "b", salt: [1], iterations: 1)
        XCTAssertEqual(cache.cachedKeys(password: "a", salt: [1], iterations: 1), a) // "b" is now the oldest
        _ = cache.keys(password: "c", salt: [1], iterations: 1)
        XCTAssertEqual(cache.count, 2)
        XCTAssertNotNil(cache.cachedKeys(password: "a", salt: [1], iterations: 1))
        XCTAssertNil(cache.cachedKeys(password: "b", salt: [1], iterations: 1))
        XCTAssertNil(cache.cachedKeys(password: "a", salt: [2], iterations: 1), "the salt is part of the key")
        XCTAssertNil(cache.cachedKeys(password: "a", salt: [1], iterations: 2), "so is the iteration count")
        XCTAssertEqual(a, SCRAMKeys.derive(password: "a", salt: [1], iterations: 1))
        cache.removeAll()
        XCTAssertEqual(cache.count, 0)
    }

    func testKeyCacheIsSafeUnderConcurrentUse() async {
        let cache = SCRAMKeyCache(capacity: 3)
        await withTaskGroup(of: SCRAMKeys.self) { group in
            for index in 0..<40 {
                group.addTask { cache.keys(password: "p\(index % 5)", salt: [9], iterations: 2) }
            }
            for await keys in group { XCTAssertEqual(keys.clientKey.count, 32) }
        }
        XCTAssertLessThanOrEqual(cache.count, 3)
    }

    func testCredentialDescriptionHidesSecrets() {
        let description = "\(SCRAMClientStateMachine.Credential.password("hunter2"))"
        XCTAssertFalse(description.contains("hunter2"))
        XCTAssertFalse("\(Self.verifier)".contains(Base64.encode(Self.verifier.storedKey)))
    }
}
