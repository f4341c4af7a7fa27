// Socket plumbing shared by the two epoll relays: a loopback listener, a connection upstream, and a send that
// finishes (blocking in poll when the socket is full: fine for pgbench's small messages, not for a product).
import Glibc

private func loopback(_ port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

private func withLoopback<R>(_ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = loopback(port)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// A listening socket on 127.0.0.1:`port` (blocking; used with accept after readiness).
public func listenOnLoopback(port: UInt16) -> Int32 {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
    precondition(withLoopback(port) { bind(listener, $0, $1) } == 0, "cannot bind 127.0.0.1:\(port)")
    listen(listener, 1024)
    return listener
}

/// A connection to 127.0.0.1:`port` (connected blocking, then made non-blocking with TCP_NODELAY).
public func connectToLoopback(port: UInt16) -> Int32 {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    _ = withLoopback(port) { connect(descriptor, $0, $1) }
    makeRelaySocket(descriptor)
    return descriptor
}

/// Non-blocking, TCP_NODELAY.
public func makeRelaySocket(_ descriptor: Int32) {
    var one: Int32 = 1
    setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
    _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
}

/// Sends all `count` bytes, waiting in poll(2) while the socket is full; stops at another error.
public func sendAll(_ descriptor: Int32, _ pointer: UnsafeRawPointer, _ count: Int) {
    var offset = 0
    while offset < count {
        let sent = send(descriptor, pointer + offset, count - offset, Int32(MSG_NOSIGNAL))
        if sent > 0 { offset += sent; continue }
        if sent < 0 && errno == EINTR { continue }
        if sent < 0 && errno == EAGAIN {
            var pfd = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            poll(&pfd, 1, -1)
            continue
        }
        return
    }
}
