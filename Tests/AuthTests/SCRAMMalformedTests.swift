/// Malformed, truncated and random SCRAM messages: each gives an error, none crashes or authenticates.

import XCTest
@testable import Auth

final class SCRAMMalformedTests: XCTestCase {
    static let verifier = SCRAMVerifier.derive(password: "s3cret", salt: Array(0..<16), iterations: 16)

    func freshServer() -> SCRAMServerStateMachine {
        SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: "SRV")
    }

    /// A server that has accepted "n,,n=,r=CLI", and the valid client-final for it.
    func serverAwaitingFinal() -> (SCRAMServerStateMachine, [UInt8]) {
        var server = freshServer()
        var client = SCRAMClientStateMachine(credential: .password("s3cret"), clientNonce: "CLI")
        let serverFirst = server.receiveClientFirst(client.clientFirstMessage()).value!
        return (server, client.receiveServerFirst(serverFirst).value!)
    }

    /// A client that has sent "n,,n=,r=CLI", and the valid server-final for its exchange.
    func clientAwaitingFirst() -> SCRAMClientStateMachine {
        var client = SCRAMClientStateMachine(credential: .password("s3cret"), clientNonce: "CLI")
        _ = client.clientFirstMessage()
        return client
    }

    func testMalformedClientFirstMessages() {
        let cases: [(String, SCRAMError?)] = [
            ("", nil), ("n", nil), ("n,", nil), ("n,,", nil), ("x,,n=,r=abc", nil), ("nn,,n=,r=abc", nil),
            ("p=tls-server-end-point,,n=,r=abc", nil),  // binding where none was offered
            ("p=,,n=,r=abc", nil), ("p=tls server,,n=,r=abc", nil), ("p=tls-server-end-point,n=,r=abc", nil),
            ("n,a=bob,n=,r=abc", .unsupportedAuthorizationIdentity),
            ("n,,m=ext,n=,r=abc", .unsupportedExtension),
            ("n,,r=abc", nil), ("n,,n=", nil), ("n,,n=,r=", nil), ("n,,n=,x=abc", nil), ("n,,n=,r=ab,c", nil),
            ("n,,n=,r=ab c", nil), ("n,,n=,r=abé", nil), ("n,,n=,r=ab\u{7F}", nil), ("n,,n=,r=ab\u{0}c", nil),
            ("n,,n=,r=abc,", nil), ("n,,=,r=abc", nil), ("n,,1=,r=abc", nil),
        ]
        for (message, expected) in cases {
            var server = freshServer()
            let result = server.receiveClientFirst(bytes(message))
            if let expected {
                XCTAssertEqual(result.error, expected, message)
            } else {
                XCTAssertMalformed(result)
            }
        }
    }

    func testClientFirstExtensionsAndUserNamesAreIgnored() {
        for message in ["n,,n=,r=abc,x=ext", "n,,n=*,r=abc", "n,,n=us=2Cer,r=abc", "y,,n=bob,r=abc"] {
            var server = freshServer()
            XCTAssertNotNil(server.receiveClientFirst(bytes(message)).value, message)
        }
    }

    func testMalformedClientFinalMessages() {
        let (_, valid) = serverAwaitingFinal()
        let proof = text(valid).split(separator: ",").last!
        let cases: [(String, SCRAMError?)] = [
            ("", nil), ("c=biws", nil), ("c=biws,r=CLISRV", nil),
            ("c=biws,r=CLISRV,\(proof),x=1", nil),
            ("c=biws,\(proof)", nil), ("r=CLISRV,c=biws,\(proof)", nil),
            ("c=biws,r=CLISRV,p=!!!!", nil), ("c=biws,r=CLISRV,p=AAAA", nil), ("c=biws,r=CLISRV,p=", nil),
            ("c=bi,r=CLISRV,\(proof)", nil), ("c=eSws,r=CLISRV,\(proof)", .channelBindingMismatch),
            ("c=biws,r=CLISRX,\(proof)", .nonceMismatch), ("c=biws,r=CLI,\(proof)", .nonceMismatch),
            ("c=biws,r=CLISRV,p=" + Base64.encode([UInt8](repeating: 1, count: 32)), .invalidProof),
        ]
        for (message, expected) in cases {
            var (server, _) = serverAwaitingFinal()
            let result = server.receiveClientFinal(bytes(message))
            if let expected {
                XCTAssertEqual(result.error, expected, message)
            } else {
                XCTAssertMalformed(result)
            }
            XCTAssertNil(server.recoveredClientKey)
        }
        var (server, _) = serverAwaitingFinal()
        XCTAssertNotNil(server.receiveClientFinal(bytes("c=biws,r=CLISRV,x=ext,\(proof)")).error,
                        "an extension is signed too, so adding one breaks the proof")
    }

    func testMalformedServerFirstMessages() {
        let cases: [(String, SCRAMError?)] = [
            ("", nil), ("r=CLIx", nil), ("r=CLIx,s=AAAA", nil), ("s=AAAA,r=CLIx,i=1", nil),
            ("r=CLI,s=AAAA,i=1", .nonceMismatch), ("r=XYZx,s=AAAA,i=1", .nonceMismatch), ("r=CL,s=AAAA,i=1", .nonceMismatch),
            ("r=CLI x,s=AAAA,i=1", nil), ("r=CLIx,s=AAA,i=1", nil), ("r=CLIx,s=,i=1", nil), ("r=CLIx,s=A===,i=1", nil),
            ("r=CLIx,s=AAAA,i=0", nil), ("r=CLIx,s=AAAA,i=-1", nil), ("r=CLIx,s=AAAA,i=+1", nil), ("r=CLIx,s=AAAA,i=", nil),
            ("r=CLIx,s=AAAA,i=1x", nil), ("r=CLIx,s=AAAA,i=2147483648", nil), ("r=CLIx,s=AAAA,i=99999999999999999999", nil),
            ("m=ext,r=CLIx,s=AAAA,i=1", .unsupportedExtension),
        ]
        for (message, expected) in cases {
            var client = clientAwaitingFirst()
            let result = client.receiveServerFirst(bytes(message))
            if let expected {
                XCTAssertEqual(result.error, expected, message)
            } else {
                XCTAssertMalformed(result)
            }
        }
        var client = clientAwaitingFirst()
        XCTAssertNotNil(client.receiveServerFirst(bytes("r=CLIx,s=AAAA,i=1,x=ext")).value, "extensions are ignored")
    }

    func testMalformedServerFinalMessages() {
        for message in ["", "v=", "v=AAAA", "v=!!", "x=1", "v", "=v"] {
            var client = clientAwaitingFirst()
            _ = client.receiveServerFirst(bytes("r=CLIx,s=AAAA,i=1")).value!
            XCTAssertMalformed(client.receiveServerFinal(bytes(message)))
            XCTAssertFalse(client.isAuthenticated)
        }
    }

    func testEveryTruncationOfValidMessagesIsHandled() {
        let (_, clientFinal) = serverAwaitingFinal()
        for length in 0..<clientFinal.count {
            var (server, _) = serverAwaitingFinal()
            XCTAssertNotNil(server.receiveClientFinal(Array(clientFinal.prefix(length))).error)
        }
        let clientFirst = bytes("n,,n=,r=CLI")
        for length in 0...clientFirst.count {
            var server = freshServer()
            // Prefixes ending inside the nonce are still valid client-first messages, with a shorter nonce.
            _ = server.receiveClientFirst(Array(clientFirst.prefix(length)))
        }
        let serverFirst = bytes("r=CLISRV,s=AAECAwQFBgcICQoLDA0ODw==,i=16")
        for length in 0..<serverFirst.count {
            var client = clientAwaitingFirst()
            _ = client.receiveServerFirst(Array(serverFirst.prefix(length)))
        }
    }

    /// Random bytes and random mutations of valid messages: never a crash, and a changed client-final
    /// never authenticates.
    func testFuzzNeverCrashesNorAuthenticatesAMutatedProof() {
        var random = SeededGenerator(seed: 0x5C8A_11)
        let alphabet = bytes("nyprcsivme=,AZaz09+/!~ \u{0}")
        let (_, validFinal) = serverAwaitingFinal()
        let seeds = [bytes("n,,n=,r=CLI"), bytes("r=CLISRV,s=AAECAwQFBgcICQoLDA0ODw==,i=16"), validFinal, bytes("v=AAAA")]
        for iteration in 0..<4000 {
            var message: [UInt8]
            if iteration % 2 == 0 {
                let count = Int.random(in: 0...64, using: &random)
                message = (0..<count).map { _ in
                    Bool.random(using: &random) ? alphabet.randomElement(using: &random)! : UInt8.random(in: 0...255, using: &random)
                }
            } else {
                message = seeds.randomElement(using: &random)!
                for _ in 0..<Int.random(in: 1...3, using: &random) where !message.isEmpty {
                    let index = Int.random(in: 0..<message.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: message[index] = alphabet.randomElement(using: &random)!
                    case 1: message.remove(at: index)
                    default: message.insert(UInt8.random(in: 0...255, using: &random), at: index)
                    }
                }
            }

            var server = freshServer()
            _ = server.receiveClientFirst(message)
            var (awaitingFinal, _) = serverAwaitingFinal()
            if case .success = awaitingFinal.receiveClientFinal(message) {
                XCTAssertEqual(message, validFinal, "a mutated client-final authenticated: \(text(message))")
            }
            var client = clientAwaitingFirst()
            if case .success = client.receiveServerFirst(message) {
                _ = client.receiveServerFinal(message)
            }
            _ = SCRAMVerifier(parsing: text(message))
            _ = Base64.decode(message)
        }
    }
}
