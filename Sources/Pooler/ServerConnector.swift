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
    /// Switches a plaintext TCP channel (no TLS handler in its pipeline), client or server side, to the relay's
    /// direct I/O: returns its socket descriptor for direct writes (`DirectSocketWriter`) and, where the transport
    /// can (pgcat's own event loop), hands its reads to `receiver` past the pipeline from now on; `receiver` must
    /// be the channel's only inbound handler. nil keeps every read and write in NIO. Called on the channel's loop,
    /// after any TLS negotiation.
    func startDirectIO(of channel: Channel, readsTo receiver: DirectReadReceiver) -> CInt?
    /// Ends the output of a plaintext TCP channel (shutdown(SHUT_WR): a FIN after what the kernel holds) and keeps
    /// it open for reading. False where that cannot be done (TLS, not TCP); the caller then closes the channel.
    /// Called on the channel's loop once NIO holds nothing more to write.
    func shutdownOutput(of channel: Channel) -> Bool
    /// Whether `shutdownOutput(of:)` can ever succeed (test connectors: no).
    var shutsDownOutput: Bool { get }
}

extension ServerConnector {
    public func startDirectIO(of channel: Channel, readsTo receiver: DirectReadReceiver) -> CInt? { nil }
    public func shutdownOutput(of channel: Channel) -> Bool { false }
    public var shutsDownOutput: Bool { false }
}

/// A handler that can take its channel's reads without the pipeline walk: the same calls as `channelRead` and
/// `channelReadComplete`, without the handler context and the NIOAny box.
public protocol DirectReadReceiver: AnyObject {
    func directRead(_ buffer: ByteBuffer)
    func directReadComplete()
}

import PostgresWire
