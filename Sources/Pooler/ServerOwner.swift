/// Who receives a leased server connection's bytes: a client session, or the cleanup that readies it for reuse.
import NIOCore

protocol ServerOwner: AnyObject, Sendable {
    var eventLoop: EventLoop { get }
    /// Bytes from the server; called on `eventLoop`.
    func serverRead(_ buffer: ByteBuffer, from server: ServerConnection)
    /// End of a read batch; called on `eventLoop`.
    func serverReadComplete(from server: ServerConnection)
    /// The server connection closed or failed; called on `eventLoop`.
    func serverClosed(_ server: ServerConnection, reason: String)
    /// The state SHOW SERVERS reports while this owner holds the connection.
    var ownedServerState: ServerState { get }
}

extension ServerOwner {
    var ownedServerState: ServerState { .used }
}
