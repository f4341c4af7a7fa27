/// Client startup: SSL/GSS negotiation, cancel requests, the startup packet, authentication and the welcome.
import Config
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Parameters the client chooses that follow it to every server connection (reported by Postgres).
    static let trackedParameterNames: Set<String> = [
        "application_name", "client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings",
    ]

    func driveStartup() {
        while var buffer = inbox, buffer.readableBytes > 0 {
            switch phase {
            case .startup:
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
            case .authenticating(var machine):
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
                phase = .authenticating(machine)
                carryOut(action)
            default:
                return
            }
        }
    }

    private func handle(_ packet: StartupPacket) {
        switch packet {
        case .sslRequest, .gssEncRequest:
            // No TLS or GSSAPI yet: "N" tells the client to continue in plaintext (or give up if it requires it).
            var buffer = allocate(1)
            buffer.writeInteger(UInt8(ascii: "N"))
            write(buffer)
            flushIfNeeded()
        case .cancel(let pid, let secret):
            runtime.cancel(BackendKeyData(processID: pid, secretKey: secret))
            inbox = nil
            closeClient()
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
        database = values["database"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        applicationName = values["application_name"] ?? ""
        reportedApplicationName.withLockedValue { $0 = applicationName }
        for name in Self.trackedParameterNames {
            if let value = values[name] { trackedParameters[name] = value }
        }
        logger[metadataKey: "user"] = "\(user)"
        logger[metadataKey: "database"] = "\(database)"

        if Self.adminDatabases.contains(database) && !runtime.hasDatabase(database) {
            startAdminSession()  // admin logins work during a shutdown too
            return
        }
        if runtime.isShuttingDown {
            fatal(.adminShutdown, "the pooler is shutting down")
            return
        }
        guard runtime.hasDatabase(database) else {
            fatal(.invalidCatalogName, "no such database: \(database)")
            return
        }
        guard runtime.admitClient(database: database, user: user) else {
            fatal(.tooManyConnections, "too many client connections for \(database)/\(user) (max_client_conn or max_client_connections)")
            return
        }
        admitted = true
        runtime.registerCancelKey(key, for: self)
        let auth = runtime.userAuth(database: database, user: user)
        pool = runtime.pool(database: database, user: user)
        if let pool {
            poolMode = pool.settings.poolMode
            rewritesStatements = poolMode == .transaction && pool.statementCacheSize > 0
        }
        var machine = ClientAuthStateMachine(user: user, authType: auth?.config.authType,
                                             password: auth?.config.password, verifier: auth?.scramVerifier)
        let action = machine.start()
        phase = .authenticating(machine)
        carryOut(action)
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
            fatal(state, message)
        }
    }

    private func authenticated(clientKey: [UInt8]?) {
        if isAdmin {
            adminWelcome()
            return
        }
        guard let pool else {
            fatal(.invalidPassword, "password authentication failed for user \"\(user)\"")
            return
        }
        if let clientKey { pool.rememberClientKey(clientKey) }
        var buffer = allocate(16)
        MessageEncoder.authenticationOK(into: &buffer)
        write(buffer)
        if runtime.general.logClientConnections {
            logger.info("client connected", metadata: ["application_name": "\(applicationName)"])
        }
        if let parameters = pool.serverParameters {
            welcome(serverParameters: parameters)
            return
        }
        // No server has been reached yet: borrow one to learn what to report.
        phase = .awaitingParameters
        flushIfNeeded()
        requestServer()
    }

    /// ParameterStatus, BackendKeyData and the first ReadyForQuery.
    func welcome(serverParameters: [String: String]) {
        var reported = serverParameters
        for (name, value) in trackedParameters { reported[name] = value }
        if reported["application_name"] == nil { reported["application_name"] = applicationName }
        var buffer = allocate(512)
        for (name, value) in reported.sorted(by: { $0.key < $1.key }) {
            MessageEncoder.parameterStatus(name, value, into: &buffer)
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
