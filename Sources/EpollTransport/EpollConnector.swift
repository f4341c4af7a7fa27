/// Outgoing TCP connections on an `EpollEventLoop`: a non-blocking connect to each address in turn (one overall
/// timeout, as NIO's `connectTimeout`), then an `EpollSocketChannel` set up by `initializer` and made active.
///
/// The handlers are added only once a connect succeeded, so a handler never sees a failed attempt's channel.
#if os(Linux)
import CEpoll
import Glibc
import NIOCore

public enum EpollConnector {
    public static func connect(to addresses: [SocketAddress], on loop: EpollEventLoop, timeout: TimeAmount,
                               initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>)
        -> EventLoopFuture<Channel> {
        let connected = loop.makePromise(of: (CInt, SocketAddress).self)
        loop.execute { ConnectAttempt(addresses: addresses, loop: loop, promise: connected).start(timeout: timeout) }
        return connected.futureResult.flatMap { descriptor, address in
            let channel = EpollSocketChannel(descriptor: descriptor, remote: address, loop: loop)
            return channel.start(initializer).map { channel as Channel }
        }
    }

    /// Every address of `host` (numeric ones without a lookup), in getaddrinfo's order. Blocking for names.
    /// A host that starts with `/` is a directory holding PostgreSQL's Unix-domain socket (`.s.PGSQL.<port>`), as
    /// for libpq and PgBouncer.
    public static func resolve(host: String, port: Int) throws -> [SocketAddress] {
        if host.hasPrefix("/") {
            let directory = host.hasSuffix("/") ? String(host.dropLast()) : host
            return [try SocketAddress(unixDomainSocketPath: directory + "/.s.PGSQL.\(port)")]
        }
        if let numeric = try? SocketAddress(ipAddress: host, port: port) { return [numeric] }
        var hints = addrinfo()
        hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw EpollResolveError(host: host, port: port, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            if let raw = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET:
                    raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                case AF_INET6:
                    raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        addresses.append(SocketAddress($0.pointee, host: host))
                    }
                default:
                    break
                }
            }
            entry = info.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw EpollResolveError(host: host, port: port, reason: "no IPv4 or IPv6 address") }
        return addresses
    }
}

/// The host name did not resolve.
public struct EpollResolveError: Error, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var reason: String
    public var description: String { "cannot resolve \(host):\(port): \(reason)" }
}

/// Every attempt failed; names each address and why.
public struct EpollConnectError: Error, CustomStringConvertible {
    public var failures: [(address: SocketAddress, error: IOError)]
    public var description: String {
        failures.map { "connect to \($0.address) failed: \($0.error)" }.joined(separator: "; ")
    }
}

/// The connects of one `EpollConnector.connect`, on its loop.
private final class ConnectAttempt: EpollSource, @unchecked Sendable {  // loop thread only
    private var remaining: [SocketAddress]
    private let loop: EpollEventLoop
    private let promise: EventLoopPromise<(CInt, SocketAddress)>
    private var descriptor: CInt = -1
    private var current: SocketAddress?
    private var failures: [(address: SocketAddress, error: IOError)] = []
    private var timer: Scheduled<Void>?
    private var done = false

    init(addresses: [SocketAddress], loop: EpollEventLoop, promise: EventLoopPromise<(CInt, SocketAddress)>) {
        self.remaining = addresses
        self.loop = loop
        self.promise = promise
    }

    func start(timeout: TimeAmount) {
        timer = loop.scheduleTask(in: timeout) { [self] in
            finish(.failure(ChannelError.connectTimeout(timeout)))
        }
        tryNext()
    }

    private func tryNext() {
        while !done, !remaining.isEmpty {
            let address = remaining.removeFirst()
            let socketType = CInt(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
            let candidate = socket(address.protocol.rawValue, socketType, 0)
            guard candidate >= 0 else {
                failures.append((address, IOError(errnoCode: errno, reason: "socket")))
                continue
            }
            let result = address.withSockAddr { Glibc.connect(candidate, $0, socklen_t($1)) }
            let code = errno
            if result == 0 {
                finish(.success((candidate, address)))
                return
            }
            if code == EINPROGRESS {
                do {
                    try loop.register(candidate, self, events: EPOLLOUT.rawValue)
                    descriptor = candidate
                    current = address
                    return
                } catch let error as IOError {
                    failures.append((address, error))
                } catch {
                    Glibc.close(candidate)  // the loop is shutting down
                    finish(.failure(error))
                    return
                }
            } else {
                failures.append((address, IOError(errnoCode: code, reason: "connect")))
            }
            Glibc.close(candidate)
        }
        finish(.failure(EpollConnectError(failures: failures)))
    }

    func epollReady(_ events: UInt32) {
        guard descriptor >= 0, let address = current else { return }
        let candidate = descriptor
        loop.deregister(candidate)
        descriptor = -1
        current = nil
        var code: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        if getsockopt(candidate, SOL_SOCKET, SO_ERROR, &code, &length) != 0 { code = errno }
        if code == 0 {
            finish(.success((candidate, address)))
        } else {
            failures.append((address, IOError(errnoCode: code, reason: "connect")))
            Glibc.close(candidate)
            tryNext()
        }
    }

    func loopClosing() { finish(.failure(EventLoopError.shutdown)) }

    private func finish(_ result: Result<(CInt, SocketAddress), Error>) {
        guard !done else { return }
        done = true
        timer?.cancel()
        if descriptor >= 0 {  // the timeout (or shutdown) came during a connect
            loop.deregister(descriptor)
            Glibc.close(descriptor)
            descriptor = -1
        }
        promise.completeWith(result)
    }
}
#endif
