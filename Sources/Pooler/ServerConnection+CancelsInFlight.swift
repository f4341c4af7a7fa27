/// CancelRequests on their way to a server connection's backend. Until the connection that carries one closes, the
/// postmaster may still signal the backend, and a signal that lands during the next client's statement cancels
/// that statement instead. So a connection given back with a cancel in flight goes to no one until the cancel is
/// done (`ConnectionPool.release`; PgBouncer 1.18 holds such connections back too). Called from any event loop.
import Atomics
import NIOConcurrencyHelpers
import NIOCore

final class CancelsInFlight: @unchecked Sendable {
    /// Changed under `lock`; read without it for the release path's first look.
    private let count = ManagedAtomic(0)
    private var whenDone: (() -> Void)?
    private let lock = NIOLock()

    /// True while any cancel is in flight.
    var any: Bool { count.load(ordering: .acquiring) > 0 }

    /// A CancelRequest for this backend is being sent.
    func started() {
        lock.withLock { count.wrappingIncrement(ordering: .releasing) }
    }

    /// Its connection closed (or could not be made): runs what waited for the last one.
    func finished() {
        let action: (() -> Void)? = lock.withLock {
            guard count.wrappingDecrementThenLoad(ordering: .releasing) <= 0 else { return nil }
            defer { whenDone = nil }
            return whenDone
        }
        action?()
    }

    /// Runs `action` when no cancel is in flight any more; false (and `action` not kept) when none is now.
    func deferUntilDone(_ action: @escaping () -> Void) -> Bool {
        lock.withLock {
            guard count.load(ordering: .relaxed) > 0 else { return false }
            let earlier = whenDone
            whenDone = { earlier?(); action() }
            return true
        }
    }
}

extension ServerConnection {
    /// Sends a CancelRequest for this connection's backend (every cancel the pooler sends goes through here, so
    /// the connection is held back until it is done); nil when the backend's key is not known.
    @discardableResult
    func sendCancel(on loop: EventLoop) -> EventLoopFuture<Void>? {
        guard let key = backendKey else { return nil }
        cancelsInFlight.started()
        let sent = connector.sendCancel(host: address.host, port: address.port, key: key, on: loop)
        sent.whenComplete { [cancelsInFlight] _ in cancelsInFlight.finished() }
        return sent
    }
}
