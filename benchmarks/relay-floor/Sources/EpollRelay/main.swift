// Minimal 1:1 TCP relay on a hand-written epoll loop (one thread, level-triggered): the floor without NIO.
import Glibc
import CEpoll

let listenPort = UInt16(CommandLine.arguments[1])!
let upstreamPort = UInt16(CommandLine.arguments[2])!

func loopback(_ port: UInt16) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    return a
}
func withSockaddr<R>(_ a: inout sockaddr_in, _ body: (UnsafePointer<sockaddr>) -> R) -> R {
    withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
}

let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var one: Int32 = 1
setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
var la = loopback(listenPort)
precondition(withSockaddr(&la) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } == 0)
listen(listener, 1024)

let ep = epoll_create1(0)
func add(_ fd: Int32) {
    var ev = epoll_event()
    ev.events = EPOLLIN.rawValue
    ev.data.fd = fd
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)
}
add(listener)
var partner = [Int32](repeating: -1, count: 65536)
var pending = [[UInt8]](repeating: [], count: 65536)  // unsent bytes per destination (rare on loopback)
let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
var events = [epoll_event](repeating: epoll_event(), count: 256)

func sendAll(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) {
    var off = 0
    while off < n {
        let w = send(fd, p + off, n - off, Int32(MSG_NOSIGNAL))
        if w > 0 { off += w; continue }
        if w < 0 && errno == EINTR { continue }
        if w < 0 && errno == EAGAIN {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            poll(&pfd, 1, -1)  // spike: block until writable
            continue
        }
        return
    }
}
func closePair(_ fd: Int32) {
    let other = partner[Int(fd)]
    close(fd); partner[Int(fd)] = -1
    if other >= 0 { close(other); partner[Int(other)] = -1 }
}

while true {
    let n = epoll_wait(ep, &events, Int32(events.count), -1)
    if n < 0 { continue }
    for i in 0..<Int(n) {
        let fd = events[i].data.fd
        if fd == listener {
            let c = accept(listener, nil, nil)
            if c < 0 { continue }
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var ua = loopback(upstreamPort)
            _ = withSockaddr(&ua) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
            _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
            partner[Int(c)] = s; partner[Int(s)] = c
            add(c); add(s)
            continue
        }
        let other = partner[Int(fd)]
        if other < 0 { continue }
        let r = recv(fd, buffer, 65536, 0)
        if r > 0 { sendAll(other, buffer, r) }
        else if r == 0 || (errno != EAGAIN && errno != EINTR) { closePair(fd) }
    }
}
