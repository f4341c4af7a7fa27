/// A login with settings of its own (`options`, or startup parameters PostgreSQL takes as settings) succeeds only
/// once a server has accepted them, as PostgreSQL refuses a login with a bad value: the client gets the server's
/// error (e.g. 22023 for an invalid value, 42704 for an unknown name) as FATAL, never a session that silently runs
/// without them. A pool remembers what was accepted, so clients with the same settings skip the check.
import NIOCore
import PostgresWire

extension ClientConnection {
    func checkSettings(on server: ServerConnection, then report: ParameterReport) {
        guard let pool else { return }
        let settings = settingsToCheck
        // (ServerProbe resets another client's login settings first: the check sees what a fresh session would.)
        let query = StartupSettings.checkQuery(settings, escapingNonASCII: server.needsASCIILiterals)
        ServerProbe.run(query, on: server, timeout: .seconds(10))
            .hop(to: eventLoop).whenComplete { [self] result in
                let stillLoggingIn: Bool
                if case .awaitingParameters = phase { stillLoggingIn = true } else { stillLoggingIn = false }
                switch result {
                case .success:
                    pool.release(server)
                    pool.noteSettingsChecked(StartupSettings.checkKey(settings))
                    guard stillLoggingIn else { return }
                    settingsToCheck = []
                    welcome(report)
                case .failure(let error):
                    let refusal = error as? ServerProbe.ProbeError
                    if server.isBroken { pool.discard(server) } else { pool.release(server) }
                    guard stillLoggingIn else { return }
                    if let refusal, let state = refusal.sqlState {
                        fatal(SQLState(state), refusal.reason)
                    } else {
                        fatal(.connectionFailure, "could not check the login's settings on a server: \(error)")
                    }
                }
            }
    }
}

extension ClientConnection {
    /// The server answered the query applying this client's login settings on a newly leased connection (the
    /// client's messages waited for it). Refused (a role revoked since the login, a server unlike the one that
    /// checked them): the connection's session state is unknown, so it is discarded, and the request fails with
    /// the server's error rather than running without the settings.
    func settingsReplayAnswered(by server: ServerConnection) {
        awaitingSettingsReplay = false
        let beginRefused = sentBegin?.error
        sentBegin = nil
        guard let error = settingsReplayError else {
            if let beginRefused {
                // The server refused the client's own BEGIN (e.g. READ WRITE on a standby): its error fails the
                // request; the connection is fine (idle, no transaction).
                let fields = Self.fields(ofErrorFrame: beginRefused)
                self.server = nil
                returnServer(server, clientLeft: false)
                failRequest(SQLState(fields?.sqlState ?? SQLState.connectionFailure.code),
                            fields?.message ?? "the transaction's BEGIN failed on \(server.address)")
                return
            }
            drive()
            flushIfNeeded()
            return
        }
        settingsReplayError = nil
        let fields = Self.fields(ofErrorFrame: error)
        server.isBroken = true
        self.server = nil
        returnServer(server, clientLeft: false)
        logger.warning("a server refused the client's login settings",
                       metadata: ["server": "\(server)", "error": "\(fields?.message ?? "?")"])
        failRequest(SQLState(fields?.sqlState ?? SQLState.connectionFailure.code),
                    "the login settings could not be applied on \(server.address): \(fields?.message ?? "error")")
    }

    /// The fields of a whole ErrorResponse frame (its header included).
    static func fields(ofErrorFrame frame: ByteBuffer) -> ErrorFields? {
        var payload = frame
        payload.moveReaderIndex(forwardBy: min(FrameHeader.size, payload.readableBytes))
        return try? ErrorFields.decode(payload)
    }
}
