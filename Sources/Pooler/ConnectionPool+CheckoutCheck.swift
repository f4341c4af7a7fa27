/// A connection idle in the pool longer than `healthcheck_delay` is checked with a query before a client gets it,
/// as PgCat checks on checkout (and PgBouncer with `server_check_delay`): a backend that hangs (stopped, stuck on
/// storage) or a path that died silently would otherwise take the next client's statement and never answer. The
/// check is an empty query within `healthcheck_timeout`; a connection that fails it is closed (its replica banned)
/// and the client asks the pool again. Connections in use are never checked: only after a long idle time is the
/// round trip worth it.
import NIOCore

extension ConnectionPool {
    func checkThenDeliver(_ server: ServerConnection, to waiter: LeaseWaiter, slot: ServerSlot) {
        server.checkBeforeUse = false
        let timeout = TimeAmount.milliseconds(Int64(max(1, checkoutCheckTimeout.load)))
        ServerProbe.run(";", on: server, timeout: timeout).whenComplete { [self] outcome in
            switch outcome {
            case .success:
                deliver(server, to: waiter)
            case .failure(let error):
                logger.warning("a server connection idle in the pool failed its check before use: closed", metadata: [
                    "server": "\(slot.address)", "error": "\(error)"])
                ban(slot: slot, reason: "FailedHealthCheck")
                discard(server)
                waiter.eventLoop.execute { waiter.leaseAgain() }
            }
        }
    }
}
