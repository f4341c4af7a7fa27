/// Opening TCP connections to servers is the assembly layer's job (NIOPosix); the pooler asks through this.
import NIOCore

public protocol ServerConnector: Sendable {
    /// Connects to `host:port` on `eventLoop` and installs `handler` as the channel's protocol handler.
    func connect(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                 handler: ServerConnection) -> EventLoopFuture<Void>
    /// Runs CPU-heavy work (PBKDF2) off the event loops; the future completes on `eventLoop`.
    func runBlocking(on eventLoop: EventLoop, _ work: @escaping @Sendable () -> Void) -> EventLoopFuture<Void>
    /// Sends a CancelRequest to `host:port` on a fresh connection; completes when that connection is closed.
    @discardableResult
    func sendCancel(host: String, port: Int, key: BackendKeyData, on eventLoop: EventLoop) -> EventLoopFuture<Void>
    /// The socket descriptor of a plaintext TCP channel (no TLS handler in its pipeline) for direct relay writes
    /// (`DirectSocketWriter`), client or server side; nil to keep every write in NIO. Called on the channel's loop.
    func plaintextDescriptor(of channel: Channel) -> CInt?
    /// Hands the channel's reads to `receiver` directly, past the pipeline, where the transport can (the pooler's
    /// own event loop, no TLS). `receiver` must be the channel's only inbound handler. Called on the channel's
    /// loop, after any TLS negotiation; false leaves the reads in the pipeline.
    func deliverReads(of channel: Channel, to receiver: DirectReadReceiver) -> Bool
}

extension ServerConnector {
    public func plaintextDescriptor(of channel: Channel) -> CInt? { nil }
    public func deliverReads(of channel: Channel, to receiver: DirectReadReceiver) -> Bool { false }
}

/// A handler that can take its channel's reads without the pipeline walk: the same calls as `channelRead` and
/// `channelReadComplete`, without the handler context and the NIOAny box.
public protocol DirectReadReceiver: AnyObject {
    func directRead(_ buffer: ByteBuffer)
    func directReadComplete()
}

import PostgresWire
