/// What a pool needs from a client that waits for a server connection.
import NIOCore

protocol LeaseWaiter: AnyObject, Sendable {
    var eventLoop: EventLoop { get }
    /// A server connection is now this waiter's; called on `eventLoop`.
    func leaseGranted(_ server: ServerConnection)
    /// No server connection can be had; called on `eventLoop`.
    func leaseFailed(_ error: PoolError)
    /// A reload replaced the pool: the waiter is no longer queued there and should ask the new pool.
    func poolReplaced()
    /// RESUME: the waiter is no longer held by PAUSE and should ask its pool again.
    func leaseAgain()
}

/// Identity wrapper so waiters can sit in the pure pool machine.
struct WaiterRef: Hashable, @unchecked Sendable {
    let waiter: LeaseWaiter
    static func == (lhs: WaiterRef, rhs: WaiterRef) -> Bool { lhs.waiter === rhs.waiter }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(waiter)) }
}

/// Why a pool could not give a waiter a connection (waiting too long is the waiter's own timer: 57014).
public enum PoolError: Error, Sendable, Equatable {
    /// No server could be reached.
    case serverUnavailable(pool: String, server: String, reason: String)
}
