/// Readies a server connection for the next client after its client left, timed out, or left session state
/// behind: finish the unsynced extended-protocol exchange, roll back an open transaction, reset the session
/// (`DISCARD ALL` in session mode; `RESET ALL; RESET SESSION AUTHORIZATION` after SET and `DEALLOCATE ALL` after
/// PREPARE in transaction mode), then return it to the pool.
import Logging
import NIOCore
import PostgresWire

final class ServerCleanup: ServerOwner, @unchecked Sendable {
    let server: ServerConnection
    let pool: ConnectionPool
    let resetSession: Bool
    let logger: Logger
    var eventLoop: EventLoop { server.eventLoop }
    private var steps: [String] = []
    private var timeout: Scheduled<Void>?
    private var done = false

    init(server: ServerConnection, pool: ConnectionPool, resetSession: Bool, logger: Logger) {
        self.server = server
        self.pool = pool
        self.resetSession = resetSession
        self.logger = logger
    }

    func start() {
        pool.cleanupsInFlight.add()
        eventLoop.execute { self.begin() }
    }

    private func begin() {
        server.attach(owner: self)
        timeout = eventLoop.scheduleTask(in: .seconds(10)) { [weak self] in
            self?.fail("cleanup timed out")
        }
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        if server.unsynced {
            MessageEncoder.sync(into: &buffer)
            server.tracker.sent(FrontendID.sync)
            server.unsynced = false
        }
        if buffer.readableBytes > 0 {
            server.send(buffer)
            server.flush()
        } else {
            nextStep()
        }
    }

    /// Sends the next statement the connection needs, or returns it to the pool.
    private func nextStep() {
        var sql: String?
        if server.status != .idle {
            sql = "ROLLBACK"
        } else if resetSession && !didReset {
            didReset = true
            sql = "DISCARD ALL"
            server.forgetAppliedSettings()
            server.dirtySettings = false
            server.dirtyPrepared = false
            server.forgetAllStatements()
        } else if server.isDirty {
            var parts: [String] = []
            if server.dirtySettings {
                // RESET ALL leaves the role and session authorization alone (PostgreSQL's GUC_NO_RESET_ALL): a
                // client's SET ROLE must not reach the next client. RESET SESSION AUTHORIZATION resets the role too.
                parts.append("RESET ALL; RESET SESSION AUTHORIZATION")
                server.forgetAppliedSettings()
            }
            if server.dirtyPrepared {
                parts.append("DEALLOCATE ALL")
                server.forgetAllStatements()
            }
            server.dirtySettings = false
            server.dirtyPrepared = false
            sql = parts.joined(separator: "; ")
        }
        guard let sql else {
            finish()
            return
        }
        var buffer = ByteBufferAllocator().buffer(capacity: 32)
        MessageEncoder.query(sql, into: &buffer)
        runningOwnStatement = true
        server.tracker.sent(FrontendID.query)
        server.send(buffer)
        server.flush()
    }

    private var didReset = false
    /// One of the statements below is in flight (the Sync finishing a client's exchange may answer its errors).
    private var runningOwnStatement = false
    private var statementFailed = false

    func serverRead(_ incoming: ByteBuffer, from server: ServerConnection) {
        var buffer = server.scanner.merge(incoming)
        var reachedIdle = false
        do {
            let count = try server.scanner.scan(buffer, limit: Int(Int32.max), classify: { header in
                if header.id == BackendID.errorResponse, self.runningOwnStatement { self.statementFailed = true }
                if header.id == BackendID.readyForQuery || header.id == BackendID.parameterStatus { return .inspect }
                _ = server.tracker.received(header.id)
                return .passThrough
            }, frame: { header, payload in
                _ = server.tracker.received(header.id)
                if header.id == BackendID.parameterStatus {
                    // RESET ALL / DISCARD ALL report the defaults: keep the replay of client parameters right.
                    if let status = try? ParameterStatus.decode(payload) { server.parameters[status.name] = status.value }
                    return true
                }
                server.status = payload.getInteger(at: payload.readerIndex, as: UInt8.self).flatMap(TransactionStatus.init) ?? .idle
                if server.tracker.pendingSyncPoints == 0 {
                    reachedIdle = true
                    return false
                }
                return true
            })
            buffer.moveReaderIndex(forwardBy: count)
        } catch {
            fail("protocol error: \(error)")
            return
        }
        server.scanner.keep(buffer)
        if reachedIdle {
            server.scanner.reset()
            if statementFailed {
                fail("a cleanup statement failed")  // the session state is unknown: never hand it on
                return
            }
            nextStep()
        }
    }

    func serverReadComplete(from server: ServerConnection) {}

    func serverClosed(_ server: ServerConnection, reason: String) {
        fail(reason)
    }

    private func finish() {
        guard !done else { return }
        done = true
        pool.cleanupsInFlight.add(-1)
        timeout?.cancel()
        server.detach(owner: self)
        server.resetRelayState()
        pool.release(server)
    }

    private func fail(_ reason: String) {
        guard !done else { return }
        done = true
        pool.cleanupsInFlight.add(-1)
        timeout?.cancel()
        logger.warning("closing server connection after failed cleanup", metadata: ["reason": "\(reason)"])
        server.detach(owner: self)
        pool.discard(server)
    }
}
