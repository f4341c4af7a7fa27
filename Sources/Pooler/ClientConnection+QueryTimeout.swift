/// `query_timeout` (PgBouncer's): a client that has waited too long for its server's answer loses the session, and
/// the server connection is cancelled and closed. Checked by the janitor once a second, so the hot path pays
/// nothing; meant for hung servers and silent network paths, where nothing else ends the wait.
///
/// A user's `statement_timeout` (PgCat's) does the same per user, to the millisecond: a timer per request, armed
/// only for users that have one.
import NIOCore

extension ClientConnection {
    /// On the client's event loop. `limit` in milliseconds.
    func checkQueryTimeout(limit: Int64, now: NIODeadline = .now()) {
        guard limit > 0, case .ready = phase, let server, server.awaitsReplies,
              let start = server.requestStart, now - start >= .milliseconds(limit) else { return }
        endSession(waitingOn: server, setting: "query_timeout", waitedMs: (now - start).nanoseconds / 1_000_000,
                   message: "canceling statement due to query_timeout: the server's answer did not end within \(limit) ms")
    }

    /// A timeout passed with the server's answer still owed: the session ends (FATAL 57014), and its server
    /// connection is cancelled and discarded, never reused.
    private func endSession(waitingOn server: ServerConnection, setting: String, waitedMs: Int64, message: String) {
        // (The server may be hung, or still sending a result the client reads slowly: either way the answer
        // did not end in time.)
        logger.warning("\(setting): the server's answer did not end in time; closing the session and the server connection",
                       metadata: ["server": "\(server.address.host):\(server.address.port)", "waited_ms": "\(waitedMs)"])
        self.server = nil
        returnServer(server, clientLeft: true, timedOut: true)
        inbox = nil
        fatal(.queryCanceled, message)
    }

    /// A request was just sent on `server` (its `requestStart` set): arm the user's `statement_timeout`.
    func armStatementTimer() {
        guard statementTimer == nil, let limit = pool?.settings.statementTimeout, limit > 0 else { return }
        statementTimer = eventLoop.scheduleTask(in: .milliseconds(Int64(limit))) { [self] in
            statementTimerFired(limit: Int64(limit))
        }
    }

    func cancelStatementTimer() {
        statementTimer?.cancel()
        statementTimer = nil
    }

    /// The wait is measured from the oldest unanswered request (`requestStart` moves on at each ReadyForQuery), so a
    /// timer that fires early for the current request is armed again for the rest.
    private func statementTimerFired(limit: Int64) {
        statementTimer = nil
        guard case .ready = phase, let server, let start = server.requestStart else { return }
        let due = start + .milliseconds(limit)
        if !server.awaitsReplies {
            // Extended-protocol messages sent, neither their Sync nor a Flush yet: the wait has not begun.
            armStatementTimer()
            return
        }
        if NIODeadline.now() < due {
            statementTimer = eventLoop.scheduleTask(deadline: due) { [self] in statementTimerFired(limit: limit) }
            return
        }
        endSession(waitingOn: server, setting: "statement_timeout", waitedMs: (NIODeadline.now() - start).nanoseconds / 1_000_000,
                   message: "pool statement timeout: the server's answer did not end within \(limit) ms")
    }
}
