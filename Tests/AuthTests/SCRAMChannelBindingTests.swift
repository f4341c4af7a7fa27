/// SCRAM-SHA-256-PLUS with `tls-server-end-point`: the certificate hash (checked against Python's hashlib over the
/// same DER), and the server's checks of the GS2 header and the client-final's `c=` as PostgreSQL makes them.

import XCTest
@testable import Auth

final class SCRAMChannelBindingTests: XCTestCase {
    static let verifier = SCRAMVerifier.derive(password: "s3cret", salt: Array(0..<16), iterations: 16)
    /// The hash a certificate would give: any 32 bytes do for the exchange.
    static let binding: [UInt8] = Array(100..<132)

    // Certificates made with openssl; expected hashes from hashlib.
    static let ecdsaSHA384 = "MIIBdTCCARugAwIBAgIUddacReDPsVAKSAhin3dPnx5mpHIwCgYIKoZIzj0EAwMwDzENMAsGA1UEAwwEcDM4NDAgFw0yNjExMjcxNzI5NTRaGA8yMTI2MTEwMzE3Mjk1NFowDzENMAsGA1UEAwwEcDM4NDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAu+kiQpBy8VmAWyXSWQWlQcK8cw8vaTtxbxJhahul9q5ulOvyx0m+V6pTjdl8krIDI3NWhqxiTn+a21KkYQPHSjUzBRMB0GA1UdDgQWBBTdmEZlaU/sGk7i+l0tJQUgYxiMPTAfBgNVHSMEGDAWgBTdmEZlaU/sGk7i+l0tJQUgYxiMPTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMDA0gAMEUCIBDlo0GSpLaABMHiyfSmQZjQ8V7QEtmmWp7WSIkfoMLcAiEA5TesmCExvt3Fiq9vEKUcV2qLoN6BA2SeBQcO3A+k+V4="
    static let ecdsaSHA384Hash = "4b35f25766c44e638f6f70dde74654fdeac8073ceece8e105293bfbbde3c012a127d81c49bca745ac4bc21bd2a8af00f"
    static let rsaSHA1 = "MIIB/DCCAWWgAwIBAgIUNsTGrqMBeU8qLAHejf1wRsd0bpQwDQYJKoZIhvcNAQEFBQAwDzENMAsGA1UEAwwEc2hhMTAgFw0yNjExMjcxNzI5NTRaGA8yMTI2MTEwMzE3Mjk1NFowDzENMAsGA1UEAwwEc2hhMTCBnzANBgkqhkiG9w0BAQEFAAOBjQAwgYkCgYEAuuV6EiUEnxRmI2uI/Y0pshkFJX99l1L2daE0qtlYsPa5KXPHm0TqEMDYTIr3ijC+GGZgoXOJRzAKCRp01LYv8xTdQpVs1pA1u3FbE+nO+TIeEtp5ryXJ0PLhhgxd+FJoyh7DmG/nNF7DE2yR5wW82cNtM/upYsaKPuyfA4QFgecCAwEAAaNTMFEwHQYDVR0OBBYEFDDg/GbmndFueb9CU31ZkyaaxIv4MB8GA1UdIwQYMBaAFDDg/GbmndFueb9CU31ZkyaaxIv4MA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEFBQADgYEAW1s7QcSIO21unjuMIMJnXPS1czoTzodcsGFrqRoLCdiiq6LncNxRDv+wJJIqFd/ESLxyYiGCyHPPwnyeb0kG0Uyp9KyYGoXgtocPertgKYrKGSei2NAlW70nEzHk41fGO3s3+vIKfjk7SOoLVZRp94yrtsMrG8tJyWc19+bFMwo="
    /// SHA-1 signatures are bound with SHA-256 (RFC 5929 §4.1).
    static let rsaSHA1Hash = "f75ab29bb8eafd74d106f02eeebcb499eb0a9ccbb58f990d998b551ee9db6a0f"
    static let ed25519 = "MIIBMDCB46ADAgECAhQ7dtoAw2ZHK3Igg3L/DysEP4IWLDAFBgMrZXAwDTELMAkGA1UEAwwCZWQwIBcNMjYxMTI3MTcyOTU0WhgPMjEyNjExMDMxNzI5NTRaMA0xCzAJBgNVBAMMAmVkMCowBQYDK2VwAyEAEPpgI6dLq59dxIqIIR4Ai/CDofkrEjRt0E8HXoMQr4ejUzBRMB0GA1UdDgQWBBSET6O/gr8KeVQ6koU/OduwS9L2KzAfBgNVHSMEGDAWgBSET6O/gr8KeVQ6koU/OduwS9L2KzAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAJ32+ZxnqqMRili5hxEu+yyajqNEIKMFoLFswKvV6NZrnuzLCiccy+TBM85N55K+tzAglVLH+VkfDnE1hUW/bQk="

    func der(_ base64: String) -> [UInt8] { Base64.decode(Array(base64.utf8))! }

    func testCertificateHashFollowsTheSignatureAlgorithm() {
        XCTAssertEqual(TLSServerEndPoint.bindingData(certificateDER: der(Self.ecdsaSHA384)).map(Hex.encode),
                       Self.ecdsaSHA384Hash)
        XCTAssertEqual(TLSServerEndPoint.bindingData(certificateDER: der(Self.rsaSHA1)).map(Hex.encode),
                       Self.rsaSHA1Hash)
        XCTAssertNil(TLSServerEndPoint.bindingData(certificateDER: der(Self.ed25519)), "Ed25519 names no hash")
    }

    func testTruncatedOrForeignDERHasNoBinding() {
        let full = der(Self.rsaSHA1)
        for length in [0, 1, 2, 4, 10, 100] {
            XCTAssertNil(TLSServerEndPoint.bindingData(certificateDER: Array(full.prefix(length))), "\(length) bytes")
        }
        XCTAssertNil(TLSServerEndPoint.bindingData(certificateDER: [0x04, 0x02, 0x30, 0x00]))
        XCTAssertNil(TLSServerEndPoint.bindingData(certificateDER: [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]))
    }

    /// Runs a whole exchange; the server-final on success, the server's error otherwise.
    func exchange(server binding: SCRAMServerStateMachine.ChannelBinding,
                  client choice: SCRAMClientStateMachine.ChannelBinding) -> Result<[UInt8], SCRAMError> {
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: "SRV",
                                             channelBinding: binding)
        var client = SCRAMClientStateMachine(credential: .password("s3cret"), clientNonce: "CLI", channelBinding: choice)
        return server.receiveClientFirst(client.clientFirstMessage()).flatMap { serverFirst in
            client.receiveServerFirst(serverFirst).flatMap { server.receiveClientFinal($0) }
        }
    }

    func testPlusWithTheRightCertificateHashAuthenticates() {
        XCTAssertNotNil(exchange(server: .offered(data: Self.binding, selected: true),
                                 client: .tlsServerEndPoint(Self.binding)).value)
    }

    func testPlusWithAnotherCertificatesHashFails() {
        // What a client sees behind a TLS-terminating man in the middle: another certificate.
        var other = Self.binding
        other[0] ^= 1
        XCTAssertEqual(exchange(server: .offered(data: Self.binding, selected: true), client: .tlsServerEndPoint(other)).error,
                       .channelBindingMismatch)
    }

    func testPlainSCRAMStillWorksWherePlusIsOffered() {
        XCTAssertNotNil(exchange(server: .offered(data: Self.binding, selected: false), client: .none).value)
        XCTAssertNotNil(exchange(server: .unavailable, client: .none).value)
        XCTAssertNotNil(exchange(server: .unavailable, client: .supportedButNotOffered).value)
    }

    func testAClientThatCouldBindButThinksTheServerCannotIsADowngrade() {
        XCTAssertEqual(exchange(server: .offered(data: Self.binding, selected: false), client: .supportedButNotOffered).error,
                       .channelBindingNegotiation)
    }

    func testTheMechanismAndTheGS2FlagMustAgree() {
        // -PLUS chosen, no binding in the message.
        XCTAssertMalformed(exchange(server: .offered(data: Self.binding, selected: true), client: .none))
        XCTAssertMalformed(exchange(server: .offered(data: Self.binding, selected: true), client: .supportedButNotOffered))
        // Plain SCRAM chosen, binding in the message (offered or not).
        XCTAssertMalformed(exchange(server: .offered(data: Self.binding, selected: false), client: .tlsServerEndPoint(Self.binding)))
        XCTAssertMalformed(exchange(server: .unavailable, client: .tlsServerEndPoint(Self.binding)))
    }

    func testOnlyTLSServerEndPointIsSupported() {
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: "SRV",
                                             channelBinding: .offered(data: Self.binding, selected: true))
        XCTAssertEqual(server.receiveClientFirst(bytes("p=tls-unique,,n=,r=CLI")).error,
                       .unsupportedChannelBindingType("tls-unique"))
    }

    func testTheClientFinalMustCarryTheHeaderAndTheHash() {
        // A client-final that repeats only the GS2 header (as a client that forgot the hash would).
        var server = SCRAMServerStateMachine(username: "alice", verifier: Self.verifier, serverNonce: "SRV",
                                             channelBinding: .offered(data: Self.binding, selected: true))
        XCTAssertNotNil(server.receiveClientFirst(bytes("p=tls-server-end-point,,n=,r=CLI")).value)
        let proof = String(repeating: "A", count: 43) + "="
        let headerOnly = "c=" + text(Base64.encodeToBytes(bytes("p=tls-server-end-point,,"))) + ",r=CLISRV,p=" + proof
        XCTAssertEqual(server.receiveClientFinal(bytes(headerOnly)).error, .channelBindingMismatch)
    }
}
