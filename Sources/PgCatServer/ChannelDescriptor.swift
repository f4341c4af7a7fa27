/// The socket descriptor under a plaintext TCP channel, for the relay's direct writes (`DirectSocketWriter`).
///
/// pgcat's own channels (`EpollSocketChannel`) give it out. NIOPosix keeps the descriptor private, so it is read by
/// reflection (`BaseSocketChannel.socket` -> `BaseSocket.descriptor`) once per connection and then checked against
/// the channel itself: it must be a socket whose local and peer addresses are the channel's. Anything that does not
/// match (another NIO layout, a TLS handler in the pipeline, a channel that is not TCP) gives nil and the relay keeps
/// writing through NIO.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOSSL
#if os(Linux)
import EpollTransport
#endif

enum ChannelDescriptor {
    static func plaintextTCP(_ channel: Channel) -> CInt? {
        guard channel.eventLoop.inEventLoop, channel.isActive,
              (try? channel.pipeline.syncOperations.context(handlerType: NIOSSLHandler.self)) == nil
        else { return nil }
        #if os(Linux)
        if let socket = channel as? EpollSocketChannel { return socket.descriptor }
        #endif
        guard let local = channel.localAddress, let remote = channel.remoteAddress,
              let socket = storedProperty("socket", of: channel),
              let descriptor = storedProperty("descriptor", of: socket) as? CInt, descriptor >= 0
        else { return nil }
        guard matches(local, descriptor, getsockname), matches(remote, descriptor, getpeername) else { return nil }
        return descriptor
    }

    /// A stored property of a class instance, searched through its superclasses.
    private static func storedProperty(_ name: String, of value: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: value)
        while let current = mirror {
            if let child = current.children.first(where: { $0.label == name }) { return child.value }
            mirror = current.superclassMirror
        }
        return nil
    }

    /// Whether `descriptor`'s address as reported by `query` (getsockname or getpeername) is `address`.
    private static func matches(
        _ address: SocketAddress, _ descriptor: CInt,
        _ query: (CInt, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(descriptor, $0, &length) == 0 }
        }
        guard ok else { return false }
        switch address {
        case .v4(let expected):
            guard Int32(storage.ss_family) == AF_INET else { return false }
            let actual = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            return actual.sin_port == expected.address.sin_port
                && actual.sin_addr.s_addr == expected.address.sin_addr.s_addr
        case .v6(let expected):
            guard Int32(storage.ss_family) == AF_INET6 else { return false }
            let actual = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            var a = actual.sin6_addr, e = expected.address.sin6_addr
            return actual.sin6_port == expected.address.sin6_port
                && memcmp(&a, &e, MemoryLayout<in6_addr>.size) == 0
        case .unixDomainSocket:
            return false
        }
    }
}
