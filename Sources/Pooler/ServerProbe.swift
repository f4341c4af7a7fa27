/// Runs statements on a server connection outside any client session (health checks, auth_query) and hands back their
/// rows as text; any error, timeout or close fails it.
import NIOCore
import PostgresWire

final class ServerProbe: ServerOwner, @unchecked Sendable {
    var ownedServerState: ServerState { .tested }
    let server: ServerConnection
    var eventLoop: EventLoop { server.eventLoop }
    private let promise: EventLoopPromise<[[[String?]]]>
    /// Rows per statement, in order.
    private var results: [[[String?]]] = [[]]
    private var error: (message: String, sqlState: String?)?
    private var timeout: Scheduled<Void>?
    private var done = false
    /// `sql` is preceded by RESETs of the login settings applied on the connection (undone with it on an error).
    private var resetsLoginSettings = false

    /// Schema-qualified: a client's search_path left on a pooled connection must not change what it calls.
    /// A primary's timeline (the first 8 hex digits of its current WAL file name) tells an old primary from the one
    /// promoted after it (ServerHealth).
    static let query = "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN pg_catalog.pg_is_in_recovery() "
        + "THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END, "
        + "CASE WHEN NOT pg_catalog.pg_is_in_recovery() "
        + "THEN pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END"

    private init(server: ServerConnection) {
        self.server = server
        self.promise = server.eventLoop.makePromise()
    }

    /// Sends `sql` as a simple query on `server` (which must be idle and not leased to anyone) within `timeout`;
    /// the first row any of its statements returned. Login settings a client left on the connection (a role, a
    /// statement_timeout, a search_path) are RESET first, in the same implicit transaction, so `sql` runs as in a
    /// fresh session (and the next client has its own applied again).
    /// `resettingLoginSettings: false` leaves them (a check that only needs an answer, not a clean session).
    static func run(_ sql: String, on server: ServerConnection, timeout: TimeAmount,
                    resettingLoginSettings: Bool = true) -> EventLoopFuture<[String?]> {
        let probe = ServerProbe(server: server)
        server.eventLoop.execute {
            probe.resetsLoginSettings = resettingLoginSettings && !server.appliedSettings.isEmpty
            let text = (probe.resetsLoginSettings ? StartupSettings.replay(from: server.appliedSettings, to: []) : "") + sql
            var buffer = ByteBufferAllocator().buffer(capacity: text.utf8.count + 8)
            MessageEncoder.query(text, into: &buffer)
            probe.start(buffer, messages: [FrontendID.query], timeout: timeout)
        }
        return probe.promise.futureResult.map { $0.first(where: { !$0.isEmpty })?.first ?? [] }
    }

    /// Sends `statements` with the extended protocol and one Sync; every statement's rows.
    static func run(_ statements: [AuthQuery.Statement], on server: ServerConnection,
                    timeout: TimeAmount) -> EventLoopFuture<[[[String?]]]> {
        let probe = ServerProbe(server: server)
        server.eventLoop.execute {
            var buffer = ByteBufferAllocator().buffer(capacity: 256)
            for statement in statements {
                MessageEncoder.extendedQuery(statement.sql, parameters: statement.parameters, into: &buffer)
            }
            MessageEncoder.sync(into: &buffer)
            // Only ReadyForQuery is tracked (as for the simple query): the connection is used by nobody else.
            probe.start(buffer, messages: [FrontendID.sync], timeout: timeout)
        }
        return probe.promise.futureResult
    }

    private func start(_ buffer: ByteBuffer, messages: [UInt8], timeout: TimeAmount) {
        server.attach(owner: self)
        server.resetRelayState()
        self.timeout = eventLoop.scheduleTask(in: timeout) { [weak self] in self?.fail("timed out") }
        for id in messages { server.tracker.sent(id) }
        server.send(buffer)
        server.flush()
    }

    func serverRead(_ incoming: ByteBuffer, from server: ServerConnection) {
        var buffer = server.scanner.merge(incoming)
        var finished = false
        do {
            let count = try server.scanner.scan(buffer, limit: 1 << 20, classify: { header in
                switch header.id {
                case BackendID.dataRow, BackendID.errorResponse, BackendID.readyForQuery, BackendID.commandComplete,
                     BackendID.emptyQueryResponse:
                    return .inspect
                default: return .passThrough
                }
            }, frame: { header, payload in
                switch header.id {
                case BackendID.dataRow:
                    self.results[self.results.count - 1].append(Self.decodeRow(payload))
                case BackendID.commandComplete, BackendID.emptyQueryResponse:
                    self.results.append([])
                case BackendID.errorResponse:
                    self.error = Self.fields(payload)
                case BackendID.readyForQuery:
                    _ = server.tracker.received(header.id)
                    server.status = payload.getInteger(at: payload.readerIndex, as: UInt8.self)
                        .flatMap(TransactionStatus.init) ?? .idle
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
            // The server refused the statement and is ready again: the connection itself is fine.
            fail(error.message, sqlState: error.sqlState, connectionUsable: server.status == .idle)
        } else {
            finish(results)
        }
    }

    func serverReadComplete(from server: ServerConnection) {}

    func serverClosed(_ server: ServerConnection, reason: String) {
        fail(reason)
    }

    private func finish(_ values: [[[String?]]]) {
        guard !done else { return }
        done = true
        timeout?.cancel()
        if resetsLoginSettings { server.forgetAppliedSettings() }
        server.detach(owner: self)
        promise.succeed(values)
    }

    private func fail(_ reason: String, sqlState: String? = nil, connectionUsable: Bool = false) {
        guard !done else { return }
        done = true
        timeout?.cancel()
        server.detach(owner: self)
        if !connectionUsable { server.isBroken = true }
        promise.fail(ProbeError(reason: reason, sqlState: sqlState))
    }

    struct ProbeError: Error, CustomStringConvertible {
        var reason: String
        /// The server's SQLSTATE when the server refused the statement.
        var sqlState: String?
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

    private static func fields(_ payload: ByteBuffer) -> (message: String, sqlState: String?) {
        var payload = payload
        var message = "error"
        var state: String?
        while let field = payload.readInteger(as: UInt8.self), field != 0 {
            let value = payload.readNullTerminatedString() ?? ""
            if field == UInt8(ascii: "M") { message = value }
            if field == UInt8(ascii: "C") { state = value }
        }
        return (message, state)
    }
}
