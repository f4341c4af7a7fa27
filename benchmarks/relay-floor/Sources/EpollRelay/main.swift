// Minimal 1:1 TCP relay on a hand-written epoll loop (one thread, level-triggered): the floor without NIO.
import CEpoll
import Glibc
import LoopbackSockets

let listenPort = UInt16(CommandLine.arguments[1])!
let upstreamPort = UInt16(CommandLine.arguments[2])!
let listener = listenOnLoopback(port: listenPort)

let ep = epoll_create1(0)
func add(_ fd: Int32) {
    var ev = epoll_event()
    ev.events = EPOLLIN.rawValue
    ev.data.fd = fd
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)
}
add(listener)
var partner = [Int32](repeating: -1, count: 65536)
let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
var events = [epoll_event](repeating: epoll_event(), count: 256)

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
            makeRelaySocket(c)
            let s = connectToLoopback(port: upstreamPort)
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
