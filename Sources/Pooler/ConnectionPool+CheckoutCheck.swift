/// A connection idle in the pool longer than `healthcheck_delay` is checked with a query before a client gets it,
/// as PgCat checks on checkout (and PgBouncer with `server_check_delay`): a backend that hangs (stopped, stuck on
/// storage) or a path that died silently would otherwise take the next client's statement and never answer. The
/// check is an empty query within `healthcheck_timeout`; a connection that fails it is closed (its replica banned)
/// and the client asks the pool again. Connections in use are never checked: only after a long idle time is the
/// round trip worth it.
import NIOCore

extension ConnectionPool {
    /// Whether `waiter`'s connection is being checked now.
    func isInCheck(_ waiter: LeaseWaiter) -> Bool {
        lock.withLock { waitersInCheck.contains(WaiterRef(waiter: waiter)) }
    }

    func checkThenDeliver(_ server: ServerConnection, to waiter: LeaseWaiter, slot: ServerSlot) {
        server.checkBeforeUse = false
        let ref = WaiterRef(waiter: waiter)
        lock.withLock { _ = waitersInCheck.insert(ref) }
        let timeout = TimeAmount.milliseconds(Int64(max(1, checkoutCheckTimeout.load)))
        // (No reset of the login settings a client left: the next client's are applied as after any client.)
        ServerProbe.run(";", on: server, timeout: timeout, resettingLoginSettings: false).whenComplete { [self] outcome in
            // A waiter that stopped waiting meanwhile (timeout, cancel, gone) was withdrawn by `cancelWait`: it is
            // not touched again, and a good connection goes back to the pool.
            let stillWaiting = lock.withLock { waitersInCheck.remove(ref) != nil }
            switch outcome {
            case .success:
                if stillWaiting { deliver(server, to: waiter) } else { release(server) }
            case .failure(let error):
                logger.warning("a server connection idle in the pool failed its check before use: closed", metadata: [
                    "server": "\(slot.address)", "error": "\(error)"])
                ban(slot: slot, reason: "FailedHealthCheck")
                discard(server)
                if stillWaiting { askAgain(waiter) }
            }
        }
    }
}
