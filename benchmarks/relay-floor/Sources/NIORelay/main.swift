// Minimal 1:1 TCP relay on SwiftNIO (one event loop): the floor of NIO's read+write path for a relay.
import NIOCore
import NIOPosix

final class Glue: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var partner: Glue?
    var context: ChannelHandlerContext?
    var pending = false
    var early: [NIOAny] = []
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func channelActive(context: ChannelHandlerContext) {
        // the upstream side became active: send what the client sent meanwhile
        if let p = partner, !p.early.isEmpty {
            for d in p.early { context.write(d, promise: nil) }
            p.early = []
            context.flush()
        }
        context.fireChannelActive()
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let target = partner?.context, target.channel.isActive else { early.append(data); return }
        target.write(data, promise: nil)
        partner?.pending = true
    }
    func channelReadComplete(context: ChannelHandlerContext) {
        if let p = partner, p.pending { p.pending = false; p.context?.flush() }
    }
    func channelInactive(context: ChannelHandlerContext) { partner?.context?.close(promise: nil) }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let listenPort = Int(CommandLine.arguments[1])!
let upstreamPort = Int(CommandLine.arguments[2])!
let server = try ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { client in
        let clientGlue = Glue()
        let serverGlue = Glue()
        clientGlue.partner = serverGlue
        serverGlue.partner = clientGlue
        ClientBootstrap(group: client.eventLoop)
            .channelInitializer { $0.pipeline.addHandler(serverGlue) }
            .connect(host: "127.0.0.1", port: upstreamPort)
            .whenFailure { _ in client.close(promise: nil) }
        return client.pipeline.addHandler(clientGlue)
    }
    .bind(host: "127.0.0.1", port: listenPort).wait()
try server.closeFuture.wait()
