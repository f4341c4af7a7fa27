/// CancelRequests on their way to a server connection's backend. Until the connection that carries one closes, the
/// postmaster may still signal the backend, and a signal that lands during the next client's statement cancels
/// that statement instead. So a connection given back with a cancel in flight goes to no one until the cancel is
/// done (PgBouncer 1.18 holds such connections back too). Called from any event loop.
import Atomics
import NIOConcurrencyHelpers

final class CancelsInFlight: @unchecked Sendable {
    private var count = 0
    private var whenDone: (() -> Void)?
    private let lock = NIOLock()
    private let inFlight = ManagedAtomic(0)

    /// A cheap first look for the pool's release path: true while any cancel is in flight.
    var any: Bool { inFlight.load(ordering: .acquiring) > 0 }

    /// A CancelRequest for this backend is being sent.
    func started() {
        lock.withLock {
            count += 1
            inFlight.store(count, ordering: .releasing)
        }
    }

    /// Its connection closed (or could not be made): runs what waited for the last one.
    func finished() {
        let action: (() -> Void)? = lock.withLock {
            count = max(0, count - 1)
            inFlight.store(count, ordering: .releasing)
            guard count == 0 else { return nil }
            defer { whenDone = nil }
            return whenDone
        }
        action?()
    }

    /// Runs `action` when no cancel is in flight any more; false (and `action` not kept) when none is now.
    func deferUntilDone(_ action: @escaping () -> Void) -> Bool {
        lock.withLock {
            guard count > 0 else { return false }
            let earlier = whenDone
            whenDone = { earlier?(); action() }
            return true
        }
    }
}
