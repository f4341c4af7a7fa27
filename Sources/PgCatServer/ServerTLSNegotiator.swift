/// `server_tls`: sends SSLRequest on a fresh server connection and, on 'S', puts a TLS client handler in front of the
/// pooler's server connection handler; on 'N' continues in plaintext unless the policy requires TLS.
import NIOCore
import NIOSSL
import Pooler
import PostgresWire

struct ServerTLSError: Error, CustomStringConvertible {
    var description: String
}

// Unchecked: created off the loop, then used only on its channel's loop (like the ServerConnection it guards).
final class ServerTLSNegotiator: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private let policy: ServerTLSPolicy
    private let host: String
    private let handler: ServerConnection
    private let done: EventLoopPromise<Void>
    private var timer: Scheduled<Void>?
    private var finished = false

    init(policy: ServerTLSPolicy, host: String, handler: ServerConnection, done: EventLoopPromise<Void>) {
        self.policy = policy
        self.host = host
        self.handler = handler
        self.done = done
    }

    /// Completes when the pooler's handler is in place (TLS handshake under way, or plaintext).
    var future: EventLoopFuture<Void> { done.futureResult }

    func channelActive(context: ChannelHandlerContext) {
        var request = context.channel.allocator.buffer(capacity: 8)
        MessageEncoder.sslRequest(into: &request)
        context.writeAndFlush(NIOAny(request), promise: nil)
        context.fireChannelActive()
    }

    func arm(timeout: TimeAmount, on channel: Channel) {
        timer = channel.eventLoop.scheduleTask(in: timeout) { [weak self] in
            self?.fail(ServerTLSError(description: "the server did not answer SSLRequest in time"), closing: channel)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard !finished else { return }
        // Exactly one byte: anything after it was sent before the handshake and could be forged (CVE-2021-23222).
        guard buffer.readableBytes == 1, let answer = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else {
            fail(ServerTLSError(description: "the server sent unexpected data in answer to SSLRequest"),
                 closing: context.channel)
            return
        }
        do {
            let pipeline = context.pipeline.syncOperations
            switch answer {
            case UInt8(ascii: "S"):
                // An IP address is checked against the certificate's IP SANs; a name is also sent as SNI.
                let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
                let tls = try NIOSSLClientHandler(context: policy.context, serverHostname: isAddress ? nil : host)
                try pipeline.addHandler(tls, position: .first)
                try pipeline.addHandler(TLSErrorNamer(), position: .after(tls))
            case UInt8(ascii: "N") where !policy.required:
                break
            case UInt8(ascii: "N"):
                throw ServerTLSError(description: "the server does not support TLS, but verify_server_certificate requires it")
            default:
                throw ServerTLSError(description: "the server answered SSLRequest with an unexpected byte \(answer)")
            }
            finished = true
            timer?.cancel()
            pipeline.removeHandler(context: context, promise: nil)
            try pipeline.addHandler(handler)
            done.succeed()
        } catch {
            fail(error, closing: context.channel)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ServerTLSError(description: "the server closed the connection during TLS negotiation"), closing: context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, closing: context.channel)
    }

    private func fail(_ error: Error, closing channel: Channel) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        done.fail(error)
        channel.close(promise: nil)
    }
}

/// Turns swift-nio-ssl's handshake errors into one line that says what failed ("TLS handshake with the server
/// failed: CERTIFICATE_VERIFY_FAILED") for the log and the client's error message.
final class TLSErrorNamer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let sslError = error as? NIOSSLError, case .handshakeFailed(let inner) = sslError else {
            context.fireErrorCaught(error)
            return
        }
        let text = "\(inner)"
        // BoringSSL reports "...:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at <source path>".
        let reason = text.range(of: "OPENSSL_internal:").map { found in
            String(text[found.upperBound...].prefix { $0.isUppercase || $0.isNumber || $0 == "_" })
        } ?? text
        context.fireErrorCaught(ServerTLSError(description: "TLS handshake with the server failed: \(reason)"))
    }
}
