/// Runs one simple query on a server connection for the health checker and hands back the first row's values as
/// text; any error, timeout or close is a failed probe.
import NIOCore
import PostgresWire

final class ServerProbe: ServerOwner, @unchecked Sendable {
    let server: ServerConnection
    var eventLoop: EventLoop { server.eventLoop }
    private let promise: EventLoopPromise<[String?]>
    private var row: [String?]?
    private var error: String?
    private var timeout: Scheduled<Void>?
    private var done = false

    static let query = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        + "ELSE pg_current_wal_lsn() END"

    private init(server: ServerConnection) {
        self.server = server
        self.promise = server.eventLoop.makePromise()
    }

    /// Sends `sql` on `server` (which must be idle and not leased to anyone) within `timeout`.
    static func run(_ sql: String, on server: ServerConnection, timeout: TimeAmount) -> EventLoopFuture<[String?]> {
        let probe = ServerProbe(server: server)
        server.eventLoop.execute { probe.start(sql, timeout: timeout) }
        return probe.promise.futureResult
    }

    private func start(_ sql: String, timeout: TimeAmount) {
        server.attach(owner: self)
        server.resetRelayState()
        self.timeout = eventLoop.scheduleTask(in: timeout) { [weak self] in self?.fail("health check timed out") }
        var buffer = ByteBufferAllocator().buffer(capacity: sql.utf8.count + 8)
        MessageEncoder.query(sql, into: &buffer)
        server.tracker.sent(FrontendID.query)
        server.send(buffer)
        server.flush()
    }

    func serverRead(_ incoming: ByteBuffer, from server: ServerConnection) {
        var buffer = server.scanner.merge(incoming)
        var finished = false
        do {
            let count = try server.scanner.scan(buffer, limit: 1 << 20, classify: { header in
                switch header.id {
                case BackendID.dataRow, BackendID.errorResponse, BackendID.readyForQuery: return .inspect
                default: return .passThrough
                }
            }, frame: { header, payload in
                switch header.id {
                case BackendID.dataRow where self.row == nil:
                    self.row = Self.decodeRow(payload)
                case BackendID.errorResponse:
                    self.error = Self.message(payload)
                case BackendID.readyForQuery:
                    _ = server.tracker.received(header.id)
                    finished = true
                    return false
                default:
                    break
                }
                return true
            })
            buffer.moveReaderIndex(forwardBy: count)
        } catch {
            fail("protocol error: \(error)")
            return
        }
        server.scanner.keep(buffer)
        guard finished else { return }
        server.scanner.reset()
        if let error {
            fail(error)
        } else {
            finish(row ?? [])
        }
    }

    func serverReadComplete(from server: ServerConnection) {}

    func serverClosed(_ server: ServerConnection, reason: String) {
        fail(reason)
    }

    private func finish(_ values: [String?]) {
        guard !done else { return }
        done = true
        timeout?.cancel()
        server.detach(owner: self)
        promise.succeed(values)
    }

    private func fail(_ reason: String) {
        guard !done else { return }
        done = true
        timeout?.cancel()
        server.detach(owner: self)
        server.isBroken = true
        promise.fail(ProbeError(reason: reason))
    }

    struct ProbeError: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    private static func decodeRow(_ payload: ByteBuffer) -> [String?] {
        var payload = payload
        guard let count = payload.readInteger(as: Int16.self), count >= 0 else { return [] }
        var values: [String?] = []
        for _ in 0..<count {
            guard let length = payload.readInteger(as: Int32.self) else { break }
            if length < 0 { values.append(nil); continue }
            values.append(payload.readString(length: Int(length)))
        }
        return values
    }

    private static func message(_ payload: ByteBuffer) -> String {
        var payload = payload
        while let field = payload.readInteger(as: UInt8.self), field != 0 {
            let value = payload.readNullTerminatedString() ?? ""
            if field == UInt8(ascii: "M") { return value }
        }
        return "error"
    }
}
