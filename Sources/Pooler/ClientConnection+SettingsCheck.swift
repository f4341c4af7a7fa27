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
        ServerProbe.run(StartupSettings.checkQuery(settings), on: server, timeout: .seconds(10))
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
