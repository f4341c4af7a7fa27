/// Authenticating a client of the pooler: trust, MD5 or SCRAM-SHA-256 against the configured user; over TLS with a
/// certificate that has a `tls-server-end-point` hash, SCRAM-SHA-256-PLUS (channel binding) is offered too.
/// An unknown user gets the same challenge as a real one and fails at the end, so names cannot be probed.
import Auth
import Config
import NIOCore
import PostgresWire

struct ClientAuthStateMachine {
    enum Action {
        case send(ByteBuffer)
        /// Authenticated; `clientKey` is set after a SCRAM login (for passthrough to servers).
        case authenticated(clientKey: [UInt8]?)
        /// Send the final SASL message, then the client is authenticated.
        case sendThenAuthenticated(ByteBuffer, [UInt8]?)
        case fail(SQLState, String)
    }

    private enum State {
        case initial
        case md5(salt: [UInt8], password: String?)
        /// AuthenticationSASL sent; the client's choice of mechanism decides the machine.
        case scramStart
        /// The SASLInitialResponse carried no data: an empty challenge was sent, the next message is client-first.
        case scramAwaitingClientFirst(SCRAMServerStateMachine)
        case scramContinue(SCRAMServerStateMachine)
        case done
    }

    private let user: String
    private let authType: AuthType
    private let password: String?
    private let verifier: SCRAMVerifier?
    private let known: Bool
    /// The TLS certificate's `tls-server-end-point` hash; nil without TLS (or without a binding).
    private let channelBinding: [UInt8]?
    private var state: State = .initial
    private let allocator = ByteBufferAllocator()

    init(user: String, authType: AuthType?, password: String?, verifier: SCRAMVerifier?,
         channelBinding: [UInt8]? = nil) {
        self.user = user
        self.channelBinding = channelBinding
        self.known = authType != nil
        self.authType = authType ?? .scramSHA256
        self.password = password
        self.verifier = verifier
    }

    private var failure: Action { .fail(.invalidPassword, "password authentication failed for user \"\(user)\"") }

    mutating func start() -> Action {
        var buffer = allocator.buffer(capacity: 32)
        switch authType {
        case .trust:
            state = .done
            return known ? .authenticated(clientKey: nil) : failure
        case .md5:
            var salt = [UInt8](repeating: 0, count: 4)
            var rng = SystemRandomNumberGenerator()
            for i in 0..<4 { salt[i] = rng.next() }
            state = .md5(salt: salt, password: known ? password : nil)
            MessageEncoder.authenticationMD5(salt: salt, into: &buffer)
            return .send(buffer)
        case .scramSHA256:
            state = .scramStart
            let mechanisms = channelBinding == nil
                ? [SCRAMServerStateMachine.mechanism]
                : [SCRAMServerStateMachine.plusMechanism, SCRAMServerStateMachine.mechanism]
            MessageEncoder.authenticationSASL(mechanisms: mechanisms, into: &buffer)
            return .send(buffer)
        }
    }

    /// What a failed SCRAM message gets, with PostgreSQL 15's SQLSTATEs (compared message by message): a bound
    /// channel that does not check out is an authorization failure (28000), an authorization identity a feature
    /// PostgreSQL lacks (0A000), anything else malformed a protocol violation (08P01).
    static func refusal(_ error: SCRAMError) -> Action {
        switch error {
        case .channelBindingNegotiation, .channelBindingMismatch:
            return .fail(.invalidAuthorizationSpecification, "\(error)")
        case .unsupportedAuthorizationIdentity:
            return .fail(.featureNotSupported, "client uses authorization identity, but it is not supported")
        case .nonceMismatch:
            return .fail(.protocolViolation, "invalid SCRAM response: nonce does not match")
        default:
            return .fail(.protocolViolation, "\(error)")
        }
    }

    /// A `p` message from the client.
    mutating func receive(_ payload: ByteBuffer) -> Action {
        switch state {
        case .md5(let salt, let password):
            state = .done
            guard let response = try? PasswordPayload.password(payload), let password,
                  MD5Password.verify(response: response, user: user, configuredPassword: password, salt: salt) else {
                return failure
            }
            return .authenticated(clientKey: nil)
        case .scramStart:
            guard let (mechanism, data) = try? PasswordPayload.saslInitial(payload) else {
                state = .done
                return .fail(.protocolViolation, "malformed SASLInitialResponse message")
            }
            let binding: SCRAMServerStateMachine.ChannelBinding
            switch (mechanism, channelBinding) {
            case (SCRAMServerStateMachine.mechanism, nil): binding = .unavailable
            case (SCRAMServerStateMachine.mechanism, let data?): binding = .offered(data: data, selected: false)
            case (SCRAMServerStateMachine.plusMechanism, let data?): binding = .offered(data: data, selected: true)
            default:
                state = .done
                return .fail(.protocolViolation, "client selected an invalid SASL authentication mechanism")
            }
            let usable = known && (verifier != nil)
            let machine = SCRAMServerStateMachine(username: user, verifier: usable ? verifier : nil,
                                                  serverNonce: AuthNonce.random(), channelBinding: binding)
            guard let data else {
                // No initial response (length -1): as PostgreSQL does, an empty challenge, which the client answers
                // with what the initial response would have carried.
                state = .scramAwaitingClientFirst(machine)
                var buffer = allocator.buffer(capacity: 16)
                MessageEncoder.authentication(AuthenticationCode.saslContinue, data: [], into: &buffer)
                return .send(buffer)
            }
            return receiveClientFirst(data, machine: machine)
        case .scramAwaitingClientFirst(let machine):
            return receiveClientFirst(PasswordPayload.saslResponse(payload), machine: machine)
        case .scramContinue(var machine):
            state = .done
            switch machine.receiveClientFinal(PasswordPayload.saslResponse(payload)) {
            case .success(let serverFinal):
                var buffer = allocator.buffer(capacity: serverFinal.count + 16)
                MessageEncoder.authentication(AuthenticationCode.saslFinal, data: serverFinal, into: &buffer)
                return .sendThenAuthenticated(buffer, machine.recoveredClientKey)
            case .failure(.invalidProof):
                return failure
            case .failure(let error):
                return Self.refusal(error)
            }
        case .initial, .done:
            state = .done
            return .fail(.protocolViolation, "unexpected password message")
        }
    }

    private mutating func receiveClientFirst(_ data: [UInt8], machine: SCRAMServerStateMachine) -> Action {
        var machine = machine
        switch machine.receiveClientFirst(data) {
        case .success(let serverFirst):
            state = .scramContinue(machine)
            var buffer = allocator.buffer(capacity: serverFirst.count + 16)
            MessageEncoder.authentication(AuthenticationCode.saslContinue, data: serverFirst, into: &buffer)
            return .send(buffer)
        case .failure(let error):
            state = .done
            return Self.refusal(error)
        }
    }
}
