/// The admin console session: login with `admin_username`/`admin_password` on database `pgcat` or `pgbouncer`,
/// then simple queries answered by AdminConsole. Extended-protocol messages get an error (0A000) and are skipped up
/// to their Sync, as after any error; a FunctionCall gets the error and ReadyForQuery; an unknown message type is
/// FATAL 08P01, as in PostgreSQL.
import NIOCore
import PostgresWire

extension ClientConnection {
    static let adminDatabases: Set<String> = ["pgcat", "pgbouncer"]

    func startAdminSession() {
        isAdmin = true
        let admin = runtime.adminUser
        let known = admin.map { $0.config.username.isEmpty || $0.config.username == user } ?? false
        var machine = ClientAuthStateMachine(user: user, authType: admin?.config.authType ?? .md5,
                                             password: known ? admin?.config.password : nil,
                                             verifier: known ? admin?.scramVerifier : nil,
                                             channelBinding: tlsChannelBinding)
        let action = machine.start()
        authMachine = machine
        phase = .authenticating
        carryOut(action)
    }

    func adminWelcome() {
        guard let admin = runtime.adminUser, admin.config.username.isEmpty || admin.config.username == user else {
            fatal(.invalidPassword, "password authentication failed for user \"\(user)\"")
            return
        }
        logger.info("admin console login")
        var buffer = allocate(512)
        MessageEncoder.authenticationOK(into: &buffer)
        let parameters: [(String, String)] = [
            ("application_name", applicationName), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
            ("server_encoding", "UTF8"), ("server_version", PgCatVersion.string),
            ("standard_conforming_strings", "on"), ("TimeZone", "Etc/UTC"),
        ]
        for (name, value) in parameters { MessageEncoder.parameterStatus(name, value, into: &buffer) }
        MessageEncoder.backendKeyData(key, into: &buffer)
        MessageEncoder.readyForQuery(.idle, into: &buffer)
        write(buffer)
        phase = .ready
        loginTimer?.cancel()
        loginTimer = nil
        driveAdmin()
        flushIfNeeded()
    }

    func driveAdmin() {
        while case .ready = phase, var buffer = inbox, let header = FrameHeader.peek(buffer, at: buffer.readerIndex) {
            do {
                try header.validate(limit: maxMessageSize)
            } catch {
                fatal(.protocolViolation, "invalid message from client: \(error)")
                return
            }
            guard buffer.readableBytes >= header.frameSize else { break }
            let payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: header.payloadSize)!
            buffer.moveReaderIndex(forwardBy: header.frameSize)
            inbox = buffer.readableBytes > 0 ? buffer : nil
            switch header.id {
            case FrontendID.terminate:
                closeClient()
                return
            case FrontendID.sync:
                discardUntilSync = false
                sendReady()
            case FrontendID.flush:
                break
            case FrontendID.query where !discardUntilSync:
                var text = String(decoding: payload.readableBytesView, as: UTF8.self)
                if text.hasSuffix("\0") { text.removeLast() }
                runAdmin(text)
            case FrontendID.parse, FrontendID.bind, FrontendID.describe, FrontendID.execute, FrontendID.close:
                if !discardUntilSync {
                    sendError(.featureNotSupported, "the admin console accepts simple queries only")
                    discardUntilSync = true
                }
            case FrontendID.functionCall where !discardUntilSync:
                // A request of its own, as a Query: answered with the error and ReadyForQuery (no Sync follows).
                sendError(.featureNotSupported, "the admin console accepts simple queries only")
                sendReady()
            case FrontendID.copyData, FrontendID.copyDone, FrontendID.copyFail, FrontendID.functionCall:
                break  // outside COPY PostgreSQL ignores them; a FunctionCall after an error is skipped to the Sync
            default:
                fatal(.protocolViolation, "invalid frontend message type \(header.id)")
                return
            }
        }
        flushIfNeeded()
    }

    private func runAdmin(_ text: String) {
        logger.info("admin command", metadata: ["command": "\(text.prefix(200))"])
        let reply = AdminConsole(runtime: runtime).execute(text)
        var buffer = allocate(1024)
        for notice in reply.notices {
            MessageEncoder.errorResponse(severity: .notice, state: SQLState("00000"), message: notice,
                                         id: BackendID.noticeResponse, into: &buffer)
        }
        if let error = reply.error {
            MessageEncoder.errorResponse(severity: .error, state: error.state, message: error.message, into: &buffer)
        } else {
            for result in reply.results { result.encode(into: &buffer) }
        }
        MessageEncoder.readyForQuery(.idle, into: &buffer)
        write(buffer)
    }
}
