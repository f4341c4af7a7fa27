/// Logging in to a PostgreSQL server: startup message, authentication (trust, cleartext, MD5, SCRAM-SHA-256),
/// then collecting ParameterStatus and BackendKeyData until the first ReadyForQuery.
import Auth
import NIOCore
import PostgresWire

public struct ServerCredentials: Sendable {
    public var user: String
    public var database: String
    /// Plaintext or a stored `md5...` hash; nil when the user has none.
    public var password: String?
    /// ClientKey recovered from a client's SCRAM proof (login with a stored SCRAM verifier).
    public var scramClientKey: [UInt8]?
    public var applicationName: String
    /// More startup parameters (the auth_query connection sets `search_path`).
    public var extraParameters: [(String, String)] = []

    public init(user: String, database: String, password: String?, scramClientKey: [UInt8]? = nil, applicationName: String = "pgcat") {
        self.user = user
        self.database = database
        self.password = password
        self.scramClientKey = scramClientKey
        self.applicationName = applicationName
    }
}

public struct ServerStartupStateMachine: Sendable {
    public enum Action: Equatable {
        case send(ByteBuffer)
        case wait
        /// PBKDF2 is needed: run `precomputeKeys(for:)` off the event loop, then feed the same frame again.
        case deriveKeysOffLoop(Frame)
        /// Startup finished: the connection is idle and ready.
        case ready(parameters: [String: String], key: BackendKeyData?)
        case fail(String)
    }

    enum State: Sendable {
        case initial
        case authenticating
        case scram(SCRAMClientStateMachine)
        case waitingForReady
        case done
        case failed
    }

    private var state: State = .initial
    private let credentials: ServerCredentials
    private let keyCache: SCRAMKeyCache?
    private var parameters: [String: String] = [:]
    private var key: BackendKeyData?
    private let allocator = ByteBufferAllocator()

    public init(credentials: ServerCredentials, keyCache: SCRAMKeyCache?) {
        self.credentials = credentials
        self.keyCache = keyCache
    }

    public mutating func start() -> Action {
        state = .authenticating
        var buffer = allocator.buffer(capacity: 96)
        MessageEncoder.startupMessage(parameters: [
            ("user", credentials.user),
            ("database", credentials.database),
            ("application_name", credentials.applicationName),
        ] + credentials.extraParameters, into: &buffer)
        return .send(buffer)
    }

    public mutating func receive(_ frame: Frame) -> Action {
        if frame.id == BackendID.authentication, case .scram(let machine) = state, keyCache != nil,
           case .saslContinue(let data)? = try? AuthenticationRequest.decode(frame.payload),
           machine.needsKeyDerivation(forServerFirst: data) {
            return .deriveKeysOffLoop(frame)
        }
        switch frame.id {
        case BackendID.authentication:
            do {
                return try authentication(AuthenticationRequest.decode(frame.payload))
            } catch {
                return fail("\(error)")
            }
        case BackendID.parameterStatus:
            if let status = try? ParameterStatus.decode(frame.payload) { parameters[status.name] = status.value }
            return .wait
        case BackendID.backendKeyData:
            key = try? BackendKeyData.decode(frame.payload)
            return .wait
        case BackendID.readyForQuery:
            guard case .waitingForReady = state else { return fail("ReadyForQuery before authentication finished") }
            state = .done
            return .ready(parameters: parameters, key: key)
        case BackendID.errorResponse:
            let fields = try? ErrorFields.decode(frame.payload)
            let sqlState = fields?.sqlState ?? "?"
            return fail("server refused the connection: \(fields?.message ?? "unknown error") (SQLSTATE \(sqlState))")
        case BackendID.noticeResponse, BackendID.negotiateProtocolVersion:
            return .wait
        default:
            return fail("unexpected message \(frame.id) during server startup")
        }
    }

    private mutating func authentication(_ request: AuthenticationRequest) -> Action {
        switch (state, request) {
        case (.authenticating, .ok):
            state = .waitingForReady
            return .wait
        case (.scram(let machine), .ok):
            // A server that skips SASLFinal has not proven it knows the password; refuse it, unless we log in
            // with a recovered ClientKey and have no ServerKey to check the signature with anyway.
            guard machine.isAuthenticated || credentials.scramClientKey != nil && plainPassword() == nil else {
                return fail("server ended SCRAM authentication without proving its identity (no SASLFinal)")
            }
            state = .waitingForReady
            return .wait
        case (.authenticating, .cleartextPassword):
            guard let password = plainPassword() else {
                return fail("server asks for a cleartext password, but no plaintext password is configured for \(credentials.user)")
            }
            var buffer = allocator.buffer(capacity: password.utf8.count + 6)
            MessageEncoder.passwordMessage(password, into: &buffer)
            return .send(buffer)
        case (.authenticating, .md5Password(let salt)):
            guard let password = credentials.password else { return fail("server asks for an MD5 password, but none is configured for \(credentials.user)") }
            guard !password.hasPrefix("SCRAM-SHA-256$") else { return fail("server asks for MD5, but only a SCRAM verifier is configured for \(credentials.user)") }
            var buffer = allocator.buffer(capacity: 48)
            MessageEncoder.passwordMessage(MD5Password.clientResponse(user: credentials.user, password: password, salt: salt), into: &buffer)
            return .send(buffer)
        case (.authenticating, .sasl(let mechanisms)):
            guard mechanisms.contains("SCRAM-SHA-256") else { return fail("server offers no supported SASL mechanism: \(mechanisms)") }
            let credential: SCRAMClientStateMachine.Credential
            if let password = plainPassword() {
                credential = .password(password)
            } else if let clientKey = credentials.scramClientKey {
                // Only a stored SCRAM verifier is configured: log in with the ClientKey a client proved.
                credential = .clientKey(clientKey: clientKey, serverKey: nil)
            } else {
                return fail("server asks for SCRAM, but no usable password is configured for \(credentials.user) (an md5 hash or a stored verifier cannot answer SCRAM without a client login)")
            }
            var machine = SCRAMClientStateMachine(credential: credential, clientNonce: AuthNonce.random(), saltedPasswordCache: keyCache)
            let first = machine.clientFirstMessage()
            state = .scram(machine)
            var buffer = allocator.buffer(capacity: first.count + 32)
            MessageEncoder.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: first, into: &buffer)
            return .send(buffer)
        case (.scram(var machine), .saslContinue(let data)):
            switch machine.receiveServerFirst(data) {
            case .success(let final):
                state = .scram(machine)
                var buffer = allocator.buffer(capacity: final.count + 8)
                MessageEncoder.saslResponse(data: final, into: &buffer)
                return .send(buffer)
            case .failure(let error):
                return fail("SCRAM exchange with the server failed: \(error)")
            }
        case (.scram(var machine), .saslFinal(let data)):
            switch machine.receiveServerFinal(data) {
            case .success:
                state = .scram(machine)
                return .wait
            case .failure(let error):
                return fail("SCRAM server signature check failed: \(error)")
            }
        case (_, .unsupported(let code)):
            return fail("unsupported authentication method \(code) requested by the server")
        default:
            return fail("unexpected authentication request \(request)")
        }
    }

    /// Fills the key cache for this server-first message (milliseconds of CPU; call it off the event loop).
    public func precomputeKeys(for frame: Frame) {
        guard case .scram(var machine) = state,
              case .saslContinue(let data)? = try? AuthenticationRequest.decode(frame.payload) else { return }
        _ = machine.receiveServerFirst(data)
    }

    private func plainPassword() -> String? {
        guard let password = credentials.password else { return nil }
        if password.hasPrefix("SCRAM-SHA-256$") { return nil }
        if password.count == 35, password.hasPrefix("md5"), password.dropFirst(3).allSatisfy(\.isHexDigit) { return nil }
        return password
    }

    private mutating func fail(_ reason: String) -> Action {
        state = .failed
        return .fail(reason)
    }
}
