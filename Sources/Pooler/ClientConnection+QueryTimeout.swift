/// `query_timeout` (PgBouncer's): a client that has waited too long for its server's answer loses the session, and
/// the server connection is cancelled and closed. Checked by the janitor once a second, so the hot path pays
/// nothing; meant for hung servers and silent network paths, where nothing else ends the wait.
import NIOCore

extension ClientConnection {
    /// On the client's event loop. `limit` in milliseconds.
    func checkQueryTimeout(limit: Int64, now: NIODeadline = .now()) {
        guard limit > 0, case .ready = phase, let server, server.tracker.pendingSyncPoints > 0,
              let start = server.requestStart, now - start >= .milliseconds(limit) else { return }
        logger.warning("query_timeout: no answer from the server; closing the session and the server connection",
                       metadata: ["server": "\(server.address.host):\(server.address.port)",
                                  "waited_ms": "\((now - start).nanoseconds / 1_000_000)"])
        self.server = nil
        returnServer(server, clientLeft: true)  // pending answer: cancelled and discarded, never reused
        inbox = nil
        fatal(.queryCanceled, "canceling statement due to query_timeout: no answer from the server within \(limit) ms")
    }
}
