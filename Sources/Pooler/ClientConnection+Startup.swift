/// Client startup: SSL/GSS negotiation, cancel requests, the startup packet, authentication and the welcome.
import Auth
import Config
import MLRouter
import NIOConcurrencyHelpers
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Parameters the client chooses that follow it to every server connection (reported by Postgres).
    static let trackedParameterNames: Set<String> = [
        "application_name", "client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings",
    ]
    /// The same by lower-case name (PostgreSQL matches setting names without case): name -> reported spelling.
    static let trackedParameterSpellings = Dictionary(
        uniqueKeysWithValues: trackedParameterNames.map { ($0.lowercased(), $0) })

    func driveStartup() {
        while var buffer = inbox, buffer.readableBytes > 0 {
            switch phase {
            case .startup:
                if awaitsCancelDelivery {  // (nothing may follow a CancelRequest)
                    inbox = nil
                    return
                }
                let packet: StartupPacket?
                do {
                    packet = try StartupPacket.decode(from: &buffer)
                } catch {
                    inbox = nil
                    if case .unsupportedProtocol = error.kind {
                        fatal(.featureNotSupported, error.description)
                    } else {
                        fatal(.protocolViolation, "invalid startup packet: \(error)")
                    }
                    return
                }
                guard let packet else { return }
                inbox = buffer.readableBytes > 0 ? buffer : nil
                handle(packet)
            case .authenticating:
                guard var machine = authMachine else { return }
                let frame: Frame?
                do {
                    frame = try Frame.read(from: &buffer, limit: ProtocolCode.maxStartupPacketLength)
                } catch {
                    inbox = nil
                    fatal(.protocolViolation, "invalid authentication message: \(error)")
                    return
                }
                guard let frame else { return }
                inbox = buffer.readableBytes > 0 ? buffer : nil
                guard frame.id == FrontendID.password else {
                    if frame.id == FrontendID.terminate { closeClient(); return }
                    fatal(.protocolViolation, "expected a password message, got message type \(frame.id)")
                    return
                }
                let action = machine.receive(frame.payload)
                authMachine = machine
                carryOut(action)
            default:
                return
            }
        }
    }

    private func handle(_ packet: StartupPacket) {
        switch packet {
        case .sslRequest:
            answerSSLRequest()
        case .gssEncRequest:
            // No GSSAPI: "N" tells the client to continue without it (or give up if it requires it).
            answerNegotiation("N")
        case .cancel(let pid, let secret):
            // Closed only once the cancel reached the server (Postgres closes its cancel connection after it
            // signalled the backend): libpq's PQcancel, psycopg and asyncpg take the close as "delivered" and send
            // their next statement, which a cancel still on its way would hit instead (PgBouncer 1.18 waits too).
            inbox = nil
            awaitsCancelDelivery = true
            loginTimer?.cancel()  // (a cancel connection gets no FATAL; the cancel's own wait is bounded)
            loginTimer = nil
            let loop = eventLoop
            runtime.cancel(BackendKeyData(processID: pid, secretKey: secret)) {
                loop.execute { self.closeClient() }
            }
        case .startup(let parameters) where parameters.contains(where: { $0.0.hasPrefix("_pq_.") }):
            negotiate(parameters)
            startSession(parameters.filter { !$0.0.hasPrefix("_pq_.") })
        case .startup(let parameters):
            startSession(parameters)
        case .startupNewerMinor(_, let parameters):
            negotiate(parameters)
            startSession(parameters.filter { !$0.0.hasPrefix("_pq_.") })
        }
    }

    /// `client_tls_mode`: 'S' and a TLS handshake when a certificate is configured (and the mode is not `disable`),
    /// otherwise 'N'.
    private func answerSSLRequest() {
        guard !tlsActive else {
            fatal(.protocolViolation, "SSLRequest received on a connection that already uses TLS")
            return
        }
        guard runtime.general.clientTLSMode != .disable, let provider = runtime.clientTLS, let context else {
            answerNegotiation("N")
            return
        }
        // Bytes sent after SSLRequest but before the handshake would be read as if they came through TLS
        // (CVE-2021-23222 in libpq, CVE-2021-23214 in the server): refuse them.
        guard inbox == nil else {
            fatal(.protocolViolation, "unexpected data after SSLRequest")
            return
        }
        do {
            let handler = try provider.makeHandler()
            answerNegotiation("S")
            try context.pipeline.syncOperations.addHandler(handler, position: .first)
            tlsActive = true
            tlsChannelBinding = provider.channelBindingData
        } catch {
            logger.error("client TLS handshake could not start", metadata: ["error": "\(error)"])
            closeClient()
        }
    }

    private func answerNegotiation(_ answer: Unicode.Scalar) {
        var buffer = allocate(1)
        buffer.writeInteger(UInt8(ascii: answer))
        write(buffer)
        flushIfNeeded()
    }

    /// The client asked for protocol 3.x (x > 0) or for protocol options: say we speak 3.0 and know no options.
    private func negotiate(_ parameters: [(String, String)]) {
        var buffer = allocate(64)
        MessageEncoder.negotiateProtocolVersion(newestVersion: ProtocolCode.protocolVersion3, unrecognized: parameters.map(\.0).filter { $0.hasPrefix("_pq_.") },
                                                into: &buffer)
        write(buffer)
    }

    private func startSession(_ parameters: [(String, String)]) {
        var values: [String: String] = [:]
        for (name, value) in parameters { values[name] = value }
        guard let user = values["user"], !user.isEmpty else {
            fatal(.invalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet")
            return
        }
        self.user = user
        if let replication = values["replication"],
           !["false", "off", "no", "0"].contains(replication.lowercased()) {
            // Streaming and logical replication need a session of their own on the server; relayed through a
            // pool they would run as ordinary queries (IDENTIFY_SYSTEM: syntax error).
            fatal(.featureNotSupported, "replication connections are not supported by the pooler: connect to the server directly")
            return
        }
        guard tlsActive || runtime.general.clientTLSMode != .require else {
            // As PostgreSQL answers a plaintext login that only hostssl lines would accept.
            fatal(.invalidAuthorizationSpecification,
                  "TLS is required (client_tls_mode: require): connect with sslmode=require or stronger")
            return
        }
        database = values["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        applicationName = values["application_name"] ?? ""
        reportedApplicationName.withLockedValue { $0 = applicationName }

        if Self.adminDatabases.contains(database) && !runtime.hasDatabase(database) {
            startAdminSession()  // admin logins work during a shutdown too
            return
        }
        do {
            let startup = try StartupSettings(parameters, trackedSpellings: Self.trackedParameterSpellings)
            trackedParameters = startup.tracked
            loginTrackedParameters = startup.tracked
            sessionSettings = startup.settings
            settingsToCheck = startup.toCheck
            if let path = startup.settings.last(where: { $0.name == "search_path" }) {
                pgmlOnLoginSearchPath = SearchPath.schemas(inSetting: path.value).map(SearchPath.includesPGML) ?? false
                pgmlOnSearchPath = pgmlOnLoginSearchPath
            }
        } catch {
            fatal(error.state, error.message)  // as PostgreSQL refuses such a login
            return
        }
        if values["application_name"] == nil, let name = trackedParameters["application_name"] {
            applicationName = name  // from `options`
            reportedApplicationName.withLockedValue { $0 = name }
        }
        if runtime.isShuttingDown {
            fatal(.adminShutdown, "the pooler is shutting down")
            return
        }
        guard runtime.hasDatabase(database) else {
            fatal(.invalidCatalogName, "no such database: \(database)")
            return
        }
        guard runtime.admitClient() else {
            fatal(.tooManyConnections, "too many client connections (max_client_conn)")
            return
        }
        admitted = true
        runtime.registerCancelKey(key, for: self)
        let auth = runtime.userAuth(database: database, user: user)
        pool = runtime.pool(database: database, user: user)
        pool?.clientJoined()
        countedInPool = true
        if let pool {
            poolMode = pool.settings.poolMode
            rewritesStatements = poolMode == .transaction && pool.statementCacheSize > 0
        }
        if poolMode == .transaction, let refusal = StartupSettings.refusalInTransactionMode(sessionSettings) {
            fatal(refusal.state, refusal.message)
            return
        }
        if let auth, let pool, auth.config.password == nil, auth.config.authType != .trust, pool.authQuery != nil {
            phase = .lookingUpPassword
            pool.lookUpPassword(on: eventLoop).hop(to: eventLoop).whenComplete { [self] result in
                guard case .lookingUpPassword = phase else { return }  // closed meanwhile
                passwordLookedUp(result, authType: auth.config.authType)
            }
            return
        }
        startAuthentication(authType: auth?.config.authType, password: auth?.config.password, verifier: auth?.scramVerifier)
    }

    private func startAuthentication(authType: AuthType?, password: String?, verifier: SCRAMVerifier?) {
        var machine = ClientAuthStateMachine(user: user, authType: authType, password: password, verifier: verifier,
                                             channelBinding: tlsChannelBinding)
        let action = machine.start()
        authMachine = machine
        phase = .authenticating
        carryOut(action)
        if inbox != nil { driveStartup() }
    }

    /// auth_query answered. Like PostgreSQL with a stored secret: a SCRAM verifier means SCRAM (also for
    /// `auth_type: md5`), an MD5 hash works only with `auth_type: md5`, a plaintext password with either. A user the
    /// lookup refused gets the same challenge as anyone and fails with 28P01, so names cannot be probed.
    private func passwordLookedUp(_ result: Result<AuthQuery.Outcome, Error>, authType: AuthType) {
        switch result {
        case .failure(let error):
            logger.error("auth_query failed", metadata: ["error": "\(error)"])
            inbox = nil
            fatal(.connectionFailure, "could not look up the password of user \"\(user)\" (auth_query failed)")
        case .success(.refused(let reason)):
            logger.info("auth_query refused the login", metadata: ["reason": "\(reason)"])
            startAuthentication(authType: authType, password: nil, verifier: nil)
        case .success(.secret(let secret)):
            passwordFromAuthQuery = true
            if SCRAMVerifier.isVerifier(secret) {
                startAuthentication(authType: .scramSHA256, password: secret, verifier: SCRAMVerifier(parsing: secret))
            } else if MD5Password.isStoredHash(secret) {
                if authType == .scramSHA256 {
                    logger.warning("auth_query returned an MD5 hash but auth_type is scram-sha-256: login refused")
                }
                startAuthentication(authType: authType, password: authType == .md5 ? secret : nil, verifier: nil)
            } else if authType == .scramSHA256 {
                // A plaintext password: SCRAM needs its verifier, and PBKDF2 never runs on an event loop.
                let loop = eventLoop
                let derived = NIOLockedValueBox<SCRAMVerifier?>(nil)
                runtime.connector.runBlocking(on: loop) {
                    derived.withLockedValue { $0 = SCRAMVerifier.derive(password: secret) }
                }.whenComplete { [self] _ in
                    guard case .lookingUpPassword = phase else { return }
                    startAuthentication(authType: authType, password: secret, verifier: derived.withLockedValue { $0 })
                }
            } else {
                startAuthentication(authType: authType, password: secret, verifier: nil)
            }
        }
    }

    func carryOut(_ action: ClientAuthStateMachine.Action) {
        switch action {
        case .send(let buffer):
            write(buffer)
            flushIfNeeded()
        case .sendThenAuthenticated(let buffer, let clientKey):
            write(buffer)
            authenticated(clientKey: clientKey)
        case .authenticated(let clientKey):
            authenticated(clientKey: clientKey)
        case .fail(let state, let message):
            inbox = nil
            if passwordFromAuthQuery { pool?.forgetAuthQuerySecret() }
            fatal(state, message)
        }
    }

    private func authenticated(clientKey: [UInt8]?) {
        authMachine = nil
        if isAdmin {
            adminWelcome()
            return
        }
        guard let pool else {
            fatal(.invalidPassword, "password authentication failed for user \"\(user)\"")
            return
        }
        if let clientKey { pool.rememberClientKey(clientKey) }
        guard runtime.admitUser(database: database, user: user) else {
            fatal(.tooManyConnections, "too many client connections for \(database)/\(user) (max_client_connections)")
            return
        }
        admittedForUser = true
        var buffer = allocate(16)
        MessageEncoder.authenticationOK(into: &buffer)
        write(buffer)
        if runtime.general.logClientConnections {
            logger.info("client connected", metadata: ["application_name": "\(applicationName)"])
        }
        if !settingsToCheck.isEmpty, pool.settingsWereChecked(StartupSettings.checkKey(settingsToCheck)) {
            settingsToCheck = []
        }
        if let report = pool.parameterReport, settingsToCheck.isEmpty {
            welcome(report)
            return
        }
        // No server has been reached yet, or one must accept the client's settings: borrow one.
        phase = .awaitingParameters
        flushIfNeeded()
        requestServer()
    }

    /// ParameterStatus, BackendKeyData and the first ReadyForQuery. The parameters a client may set itself come
    /// from its startup packet where it gave them, otherwise from the server.
    func welcome(_ report: ParameterReport) {
        var buffer = allocate(report.untrackedStatus.readableBytes + 256)
        buffer.writeImmutableBuffer(report.untrackedStatus)
        for name in ParameterFingerprint.names {  // the tracked names, sorted
            var value = trackedParameters[name]
            if value == nil, let reported = report.parameters[name], name != "application_name" {
                // The client now holds the server's default: recorded, so that a connection another client left
                // in another TimeZone or DateStyle is set back before this client's statements run.
                trackedParameters[name] = reported
                value = reported
            }
            if value == nil, name == "application_name" {
                // Recorded too: a connection another client left under its own name is set back to this one.
                value = report.parameters[name] ?? applicationName
                trackedParameters[name] = value
            }
            if let value { MessageEncoder.parameterStatus(name, value, into: &buffer) }
        }
        MessageEncoder.backendKeyData(key, into: &buffer)
        MessageEncoder.readyForQuery(.idle, into: &buffer)
        write(buffer)
        flushIfNeeded()
        phase = .ready
        loginTimer?.cancel()
        loginTimer = nil
        stats.set(.idle)
        drive()
        flushIfNeeded()
    }
}
