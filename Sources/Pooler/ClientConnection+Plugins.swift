/// PgCat's query plugins on a client's Query and Parse messages (QueryPlugins decides): `query_logger` logs the
/// text, `table_access` refuses it with 42501, `intercept` answers a Query with its canned result.
///
/// Every Query and Parse is looked at, inside transactions too, not only the one that starts a transaction: a
/// refused table must stay refused after a BEGIN. With a server held, the pooler's answer takes its place in the
/// server's reply order (ResponseTracker), as the prepared-statement replies do, and a refusal fails the server's
/// unit as Postgres's own error would (PgCat's leaves the transaction going).
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Without a server: a Query or Parse the plugins refuse or answer. True when handled here (the caller consumes
    /// the frame).
    func applyPluginsWithoutServer(_ plugins: QueryPlugins, _ id: UInt8, _ payload: ByteBuffer) -> Bool {
        // Judged already: the frame waited for the rest of its batch, which came in another read.
        if awaitingRestOfUnit, let passed = pluginsPassed, passed.id == id, passed.payload == payload { return false }
        switch pluginVerdict(plugins, id, payload) {
        case .pass:
            pluginsPassed = (id, payload)  // the relay sees this frame next: not logged or judged twice
            return false
        case .deny(let table):
            sendError(Self.insufficientPrivilege, QueryPlugins.denialMessage(table))
            if id == FrontendID.query {
                sendReady()
            } else {
                forgetUnnamedStatement(ifParse: id, payload)
                discardUntilSync = true  // as Postgres after an error: skip to Sync, which is answered then
            }
            return true
        case .intercept(let canned):
            write(QueryPlugins.interceptReply(canned, user: user, database: database))
            sendReady()
            return true
        }
    }

    /// With a server: as above, the answer queued behind what the server still owes. `before` forwards the
    /// client's earlier messages first.
    func applyPlugins(_ plugins: QueryPlugins, _ id: UInt8, _ payload: ByteBuffer, on server: ServerConnection,
                      before: () -> Void) -> Bool {
        if let passed = pluginsPassed {
            pluginsPassed = nil
            if passed.id == id && passed.payload == payload { return false }
        }
        let verdict = pluginVerdict(plugins, id, payload)
        guard verdict != .pass else { return false }
        // In a failed transaction block the server answers 25P02, as it would to any statement (not the canned rows).
        if case .intercept = verdict, server.status == .failed { return false }
        before()
        planRetry = nil
        switch verdict {
        case .pass:
            return false
        case .deny(let table):
            // The server fails the unit too, as Postgres's own 42501 would: a transaction block is failed (COMMIT
            // rolls back) and an implicit transaction's earlier statements are rolled back.
            refuseOnServer(server, Self.insufficientPrivilege, QueryPlugins.denialMessage(table),
                           endsUnit: id == FrontendID.query)
            if id != FrontendID.query {
                forgetUnnamedStatement(ifParse: id, payload)
                skipToSync = true
            }
        case .intercept(let canned):
            server.tracker.append(.synthetic(QueryPlugins.interceptReply(canned, user: user, database: database)))
            server.tracker.append(.syntheticReady)
        }
        return true
    }

    /// Logs the text (`query_logger`, a password literal masked) and decides. A Parse is never intercepted: its answer would be a whole
    /// extended-protocol exchange, which PgCat does not emulate either (it sends a simple query's reply).
    private func pluginVerdict(_ plugins: QueryPlugins, _ id: UInt8, _ payload: ByteBuffer) -> QueryPlugins.Verdict {
        var payload = payload
        if id == FrontendID.parse { _ = payload.readNullTerminatedString() }  // the statement name
        guard let text = payload.readNullTerminatedString() else { return .pass }  // malformed: the server says so
        if plugins.logsQueries {
            logger.info("[pool: \(database)][user: \(user)] \(QueryLogRedaction.redact(text))")
        }
        // Parsed however long the text is: a length limit would let padding slip a refused table through.
        let verdict = plugins.verdict(for: text) { [runtime] text in try? runtime.queryParser.facts(text).get() }
        if case .intercept = verdict, id == FrontendID.parse { return .pass }
        return verdict
    }

    static let insufficientPrivilege = SQLState("42501")
}
