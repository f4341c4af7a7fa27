/// The owner of a mirror connection: everything the mirror server answers is dropped.
import NIOCore

final class MirrorSink: ServerOwner, @unchecked Sendable {
    let eventLoop: EventLoop
    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }
    func serverRead(_ buffer: ByteBuffer, from server: ServerConnection) {}
    func serverReadComplete(from server: ServerConnection) {}
    func serverClosed(_ server: ServerConnection, reason: String) {}
}
