/// SCRAM-SHA-256 where the pooler is the client: logs in to a PostgreSQL server with a password or a ClientKey.

/// Authenticates the pooler *to a PostgreSQL server* (we are the SCRAM client). Send `clientFirstMessage()`
/// in SASLInitialResponse (mechanism `SCRAM-SHA-256`), feed AuthenticationSASLContinue's data to
/// `receiveServerFirst` and send its result in SASLResponse, then feed AuthenticationSASLFinal's data to
/// `receiveServerFinal`.
///
/// With a `.password` credential `receiveServerFirst` runs PBKDF2 unless `saltedPasswordCache` already
/// holds the keys: milliseconds of CPU, so check `needsKeyDerivation(forServerFirst:)` and run that step off
/// the event loop when it says true.
public struct SCRAMClientStateMachine: Sendable {
    /// The mechanism to name in SASLInitialResponse; the server must list it in AuthenticationSASL.
    public static let mechanism = "SCRAM-SHA-256"

    public enum Credential: Sendable, Equatable {
        case password(String)
        /// A ClientKey (e.g. recovered from the pooler's own client by `SCRAMServerStateMachine`) and, when
        /// known, the ServerKey of the same verifier. The server must hold that verifier. Without a ServerKey
        /// the server's signature cannot be computed, so `receiveServerFinal` skips that check: the server is
        /// then not authenticated to us (TLS with certificate verification is what protects that connection),
        /// but it learns nothing reusable either, as the proof is bound to this exchange's nonces.
        case clientKey(clientKey: [UInt8], serverKey: [UInt8]?)
    }

    private enum State: Sendable {
        case initial
        case waitingForServerFirst(SCRAMClientFirst)
        /// nil: no ServerKey to check the signature with.
        case waitingForServerFinal(expectedSignature: [UInt8]?)
        case authenticated
        case failed
    }

    /// The GS2 channel-binding choice of the client-first-message.
    public enum ChannelBinding: Sendable, Equatable {
        /// `n`: no binding (SCRAM-SHA-256).
        case none
        /// `y`: the client could bind but the server offered no -PLUS mechanism (SCRAM-SHA-256).
        case supportedButNotOffered
        /// `p=tls-server-end-point` with the server certificate's hash (SCRAM-SHA-256-PLUS).
        case tlsServerEndPoint([UInt8])
    }

    private var state: State = .initial
    private let channelBinding: ChannelBinding
    private let credential: Credential
    private let clientNonce: String
    private let username: String
    private let cache: SCRAMKeyCache?

    /// `clientNonce` must be a valid SCRAM nonce (printable ASCII without commas), e.g. `AuthNonce.random()`.
    /// `username` goes into `n=`; PostgreSQL ignores it (it uses the startup packet's), so the default is empty
    /// as libpq sends it.
    public init(credential: Credential, clientNonce: String, saltedPasswordCache: SCRAMKeyCache? = nil, username: String = "",
                channelBinding: ChannelBinding = .none) {
        precondition(SCRAMAttributes.isValidNonce(clientNonce.utf8), "invalid SCRAM client nonce")
        self.channelBinding = channelBinding
        self.credential = credential
        self.clientNonce = clientNonce
        self.username = username
        self.cache = saltedPasswordCache
    }

    /// "n,,n=,r=<nonce>" (the GS2 header as `channelBinding` says). Asking again before the server answered returns the same message.
    public mutating func clientFirstMessage() -> [UInt8] {
        switch state {
        case .initial:
            var message = SCRAMClientFirst.build(username: username, nonce: clientNonce)
            switch channelBinding {
            case .none: break
            case .supportedButNotOffered: message.gs2Header = Array("y,,".utf8)
            case .tlsServerEndPoint: message.gs2Header = Array("p=tls-server-end-point,,".utf8)
            }
            state = .waitingForServerFirst(message)
            return message.bytes
        case .waitingForServerFirst(let message):
            return message.bytes
        case .waitingForServerFinal, .authenticated, .failed:
            preconditionFailure("clientFirstMessage() after the server answered")
        }
    }

    /// Whether `receiveServerFirst(message)` would run PBKDF2 (a password credential whose keys for this
    /// salt and iteration count are not cached). False for a message that will be rejected anyway.
    public func needsKeyDerivation(forServerFirst message: [UInt8]) -> Bool {
        guard case .password(let password) = credential,
              case .success(let serverFirst) = SCRAMServerFirst.parse(message, clientNonce: Array(clientNonce.utf8))
        else { return false }
        return cache?.cachedKeys(password: password, salt: serverFirst.salt, iterations: serverFirst.iterations) == nil
    }

    /// Takes the server-first-message; returns the client-final-message.
    public mutating func receiveServerFirst(_ message: [UInt8]) -> Result<[UInt8], SCRAMError> {
        guard case .waitingForServerFirst(let clientFirst) = state else { return fail(.unexpectedMessage) }
        let serverFirst: SCRAMServerFirst
        switch SCRAMServerFirst.parse(message, clientNonce: clientFirst.nonce) {
        case .success(let parsed): serverFirst = parsed
        case .failure(let error): return fail(error)
        }

        let clientKey: [UInt8]
        let serverKey: [UInt8]?
        switch credential {
        case .password(let password):
            let keys = cache?.keys(password: password, salt: serverFirst.salt, iterations: serverFirst.iterations)
                ?? SCRAMKeys.derive(password: password, salt: serverFirst.salt, iterations: serverFirst.iterations)
            clientKey = keys.clientKey
            serverKey = keys.serverKey
        case .clientKey(let key, let knownServerKey):
            clientKey = key
            serverKey = knownServerKey
        }

        var bindingInput = clientFirst.gs2Header
        if case .tlsServerEndPoint(let data) = channelBinding { bindingInput += data }
        let withoutProof = SCRAMClientFinal.withoutProof(channelBindingInput: bindingInput, nonce: serverFirst.nonce)
        let comma = UInt8(ascii: ",")
        let authMessage = clientFirst.bare + [comma] + message + [comma] + withoutProof
        let clientSignature = SCRAMCrypto.hmac(key: SCRAMCrypto.sha256(clientKey), authMessage)
        guard clientKey.count == clientSignature.count else {
            // Only a caller can get here, with a ClientKey of the wrong size; the server never sees it.
            return fail(.invalidProof)
        }
        let proof = ConstantTime.xor(clientKey, clientSignature)
        state = .waitingForServerFinal(expectedSignature: serverKey.map { SCRAMCrypto.hmac(key: $0, authMessage) })
        return .success(SCRAMClientFinal(channelBinding: bindingInput, nonce: serverFirst.nonce,
                                         proof: proof, withoutProof: withoutProof).bytes)
    }

    /// Takes the server-final-message and checks the server's signature (skipped when the credential is a
    /// ClientKey without ServerKey; see `Credential.clientKey`).
    public mutating func receiveServerFinal(_ message: [UInt8]) -> Result<Void, SCRAMError> {
        guard case .waitingForServerFinal(let expectedSignature) = state else { return fail(.unexpectedMessage) }
        switch SCRAMServerFinal.parse(message) {
        case .failure(let error):
            return fail(error)
        case .success(.error(let value)):
            return fail(.serverError(value))
        case .success(.signature(let signature)):
            if let expectedSignature, !ConstantTime.equals(signature, expectedSignature) {
                return fail(.serverSignatureMismatch)
            }
            state = .authenticated
            return .success(())
        }
    }

    public var isAuthenticated: Bool {
        if case .authenticated = state { return true }
        return false
    }

    private mutating func fail<Success>(_ error: SCRAMError) -> Result<Success, SCRAMError> {
        state = .failed
        return .failure(error)
    }
}

extension SCRAMClientStateMachine.Credential: CustomStringConvertible {
    /// Keeps secrets out of logs.
    public var description: String {
        switch self {
        case .password: "password(<redacted>)"
        case .clientKey(_, let serverKey): "clientKey(<redacted>, serverKey: \(serverKey == nil ? "unknown" : "<redacted>"))"
        }
    }
}
