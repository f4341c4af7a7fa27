// Minimal 1:1 TCP relay on SwiftNIO (one event loop): the floor of NIO's read+write path for a relay.
import NIOCore
import NIOPosix
import RelayGlue

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let listenPort = Int(CommandLine.arguments[1])!
let upstreamPort = Int(CommandLine.arguments[2])!
let server = try ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { client in
        let (clientGlue, serverGlue) = Glue.pair()
        ClientBootstrap(group: client.eventLoop)
            .channelInitializer { $0.pipeline.addHandler(serverGlue) }
            .connect(host: "127.0.0.1", port: upstreamPort)
            .whenFailure { _ in client.close(promise: nil) }
        return client.pipeline.addHandler(clientGlue)
    }
    .bind(host: "127.0.0.1", port: listenPort).wait()
try server.closeFuture.wait()
