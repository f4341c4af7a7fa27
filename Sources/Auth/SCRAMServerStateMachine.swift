/// SCRAM-SHA-256 where the pooler is the server: authenticates a client against a stored verifier.

/// Authenticates a *client* of the pooler (we are the SCRAM server). Feed it the data of the client's
/// SASLInitialResponse and SASLResponse; send what it returns as AuthenticationSASLContinue and
/// AuthenticationSASLFinal. No step runs PBKDF2, so it is cheap enough for an event loop.
public struct SCRAMServerStateMachine: Sendable {
    /// The SASL mechanism without channel binding, always offered.
    public static let mechanism = "SCRAM-SHA-256"
    /// With `tls-server-end-point` channel binding: offered (first, as PostgreSQL does) over TLS when the
    /// certificate has a binding (`TLSServerEndPoint`).
    public static let plusMechanism = "SCRAM-SHA-256-PLUS"

    /// What the connection offers and the client chose.
    public enum ChannelBinding: Sendable, Equatable {
        /// No TLS, or a certificate without a binding: only SCRAM-SHA-256 was offered.
        case unavailable
        /// SCRAM-SHA-256-PLUS was offered too; `data` is the certificate's `tls-server-end-point` hash and
        /// `selected` whether the client chose the -PLUS mechanism.
        case offered(data: [UInt8], selected: Bool)
    }

    private enum State: Sendable {
        case waitingForClientFirst
        case waitingForClientFinal(AuthMessagePrefix)
        case authenticated(clientKey: [UInt8])
        case failed
    }

    /// What the client-final step needs from the first round.
    private struct AuthMessagePrefix: Sendable {
        /// The GS2 header and, when binding, the binding data: what `c=` must carry.
        var channelBindingInput: [UInt8]
        var nonce: [UInt8]
        /// client-first-message-bare "," server-first-message ","
        var bytes: [UInt8]
    }

    private var state: State = .waitingForClientFirst
    private let verifier: SCRAMVerifier
    private let isMock: Bool
    private let serverNonce: [UInt8]
    private let channelBinding: ChannelBinding

    /// `verifier == nil` means the user is unknown: the exchange still runs with a fake, deterministic-per-username
    /// salt so user names can't be probed, and always fails at the end with the same error as a wrong password.
    /// The fake salt is keyed by `mockSecret` (default: random per process); pass a persistent secret to keep
    /// the fake salts stable across restarts as real ones are. `serverNonce` must be a valid SCRAM nonce
    /// (printable ASCII without commas), e.g. `AuthNonce.random()`.
    public init(username: String, verifier: SCRAMVerifier?, serverNonce: String, mockSecret: [UInt8]? = nil,
                channelBinding: ChannelBinding = .unavailable) {
        precondition(SCRAMAttributes.isValidNonce(serverNonce.utf8), "invalid SCRAM server nonce")
        self.serverNonce = Array(serverNonce.utf8)
        self.channelBinding = channelBinding
        if let verifier {
            self.verifier = verifier
            self.isMock = false
        } else {
            self.verifier = SCRAMMockVerifier.make(username: username, secret: mockSecret ?? SCRAMMockVerifier.processSecret)
            self.isMock = true
        }
    }

    /// Takes the client-first-message; returns the server-first-message.
    public mutating func receiveClientFirst(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case .waitingForClientFirst = state else { return fail(.unexpectedMessage) }
        let clientFirst: SCRAMClientFirst
        switch SCRAMClientFirst.parse(message) {
        case .success(let parsed): clientFirst = parsed
        case .failure(let error): return fail(error)
        }
        // PostgreSQL's checks (read_client_first_message), in its words.
        var bindingData: [UInt8] = []
        switch (clientFirst.channelBindingFlag, channelBinding) {
        case (UInt8(ascii: "p"), .offered(let data, selected: true)):
            guard clientFirst.channelBindingType == "tls-server-end-point" else {
                return fail(.unsupportedChannelBindingType(clientFirst.channelBindingType ?? ""))
            }
            bindingData = data
        case (UInt8(ascii: "p"), _):
            return fail(.malformedMessage("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM "
                                          + "message includes channel binding data."))
        case (_, .offered(_, selected: true)):
            return fail(.malformedMessage("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not "
                                          + "include channel binding data."))
        case (UInt8(ascii: "y"), .offered):
            return fail(.channelBindingNegotiation)
        default:
            break  // `n`, or `y` where no binding was offered
        }
        let serverFirst = SCRAMServerFirst(nonce: clientFirst.nonce + serverNonce, salt: verifier.salt,
                                           iterations: verifier.iterations).bytes
        let comma = UInt8(ascii: ",")
        state = .waitingForClientFinal(AuthMessagePrefix(
            channelBindingInput: clientFirst.gs2Header + bindingData,
            nonce: clientFirst.nonce + serverNonce,
            bytes: clientFirst.bare + [comma] + serverFirst + [comma]
        ))
        return .success(serverFirst)
    }

    /// Takes the client-final-message; returns the server-final-message (`v=<ServerSignature>`).
    /// `.invalidProof` means a wrong password or an unknown user: answer FATAL 28P01.
    public mutating func receiveClientFinal(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case .waitingForClientFinal(let prefix) = state else { return fail(.unexpectedMessage) }
        let clientFinal: SCRAMClientFinal
        switch SCRAMClientFinal.parse(message) {
        case .success(let parsed): clientFinal = parsed
        case .failure(let error): return fail(error)
        }
        guard ConstantTime.equals(clientFinal.channelBinding, prefix.channelBindingInput) else {
            return fail(.channelBindingMismatch)
        }
        guard clientFinal.nonce == prefix.nonce else { return fail(.nonceMismatch) }

        // The same work for a known and an unknown user, so timing does not tell them apart either.
        let authMessage = prefix.bytes + clientFinal.withoutProof
        let clientSignature = SCRAMCrypto.hmac(key: verifier.storedKey, authMessage)
        let clientKey = ConstantTime.xor(clientFinal.proof, clientSignature)
        let proofMatches = ConstantTime.equals(SCRAMCrypto.sha256(clientKey), verifier.storedKey)
        guard proofMatches, !isMock else { return fail(.invalidProof) }

        state = .authenticated(clientKey: clientKey)
        let serverSignature = SCRAMCrypto.hmac(key: verifier.serverKey, authMessage)
        return .success(SCRAMServerFinal.signature(serverSignature).bytes)
    }

    /// After success: ClientKey recovered from the client's proof (ClientProof XOR ClientSignature), for
    /// logging in to the server as this user (`SCRAMClientStateMachine.Credential.clientKey`).
    public var recoveredClientKey: [UInt8]? {
        guard case .authenticated(let clientKey) = state else { return nil }
        return clientKey
    }

    public var isAuthenticated: Bool { recoveredClientKey != nil }

    private mutating func fail<Success>(_ error: SCRAMError) -> Result<Success, SCRAMError> {
        state = .failed
        return .failure(error)
    }
}

/// The verifier an unknown user appears to have: salt and keys are HMACs of the user name under a secret,
/// so they are stable per name but cannot be predicted (an attacker who could compute the fake salt
/// would know the user is unknown). PostgreSQL does the same with its cluster's `mock_auth_nonce`.
enum SCRAMMockVerifier {
    static let processSecret: [UInt8] = AuthNonce.randomBytes(count: 32)

    static func make(username: String, secret: [UInt8]) -> SCRAMVerifier {
        func derive(_ label: String) -> [UInt8] {
            SCRAMCrypto.hmac(key: secret, Array(label.utf8) + [0] + Array(username.utf8))
        }
        return SCRAMVerifier(
            iterations: SCRAMVerifier.defaultIterations,
            salt: Array(derive("salt").prefix(SCRAMVerifier.defaultSaltLength)),
            storedKey: derive("stored key"),
            serverKey: derive("server key")
        )
    }
}
