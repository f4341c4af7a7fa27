// The relay handler shared by the NIO relay and the pipeline relay: what one side reads is written to the other,
// flushed once per read-complete. Reads that arrive before the other side is active wait for it.
import NIOCore

public final class Glue: ChannelInboundHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var partner: Glue?
    private var context: ChannelHandlerContext?
    private var pending = false
    private var early: [NIOAny] = []

    /// Two handlers relaying to each other (a client side and an upstream side).
    public static func pair() -> (Glue, Glue) {
        let a = Glue()
        let b = Glue()
        a.partner = b
        b.partner = a
        return (a, b)
    }

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    public func channelActive(context: ChannelHandlerContext) {
        if let p = partner, !p.early.isEmpty {  // the upstream side became active: send what came meanwhile
            for data in p.early { context.write(data, promise: nil) }
            p.early = []
            context.flush()
        }
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let target = partner?.context, target.channel.isActive else {
            early.append(data)
            return
        }
        target.write(data, promise: nil)
        partner?.pending = true
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if let p = partner, p.pending {
            p.pending = false
            p.context?.flush()
        }
    }

    public func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }
}
