/// Opening server connections (and what follows when it fails), the janitor's sweep, and closing idle ones.
import Auth
import NIOConcurrencyHelpers
import NIOCore

extension ConnectionPool {
    private static let ids = NIOLockedValueBox(0)

    func open(_ slot: ServerSlot, on loop: EventLoop) {
        let id = Self.ids.withLockedValue { $0 += 1; return $0 }
        var credentials = self.credentials
        credentials.database = slot.address.database
        let server = ServerConnection(id: id, address: slot.address, slotIndex: slot.index, credentials: credentials, eventLoop: loop,
                                      keyCache: keyCache, connector: connector, statementCacheSize: statementCacheSize,
                                      logger: logger)
        server.epoch = reconnectEpoch.load
        lock.withLock { slot.live[ObjectIdentifier(server)] = server }
        let timeout = TimeAmount.milliseconds(Int64(max(settings.connectTimeout, 1)))
        let connected = connector.connect(host: slot.address.host, port: slot.address.port, on: loop,
                                          timeout: timeout, handler: server)
        connected.whenFailure { error in server.connectFailed(error) }
        // connect_timeout bounds the whole opening, as PgBouncer's server_connect_timeout: TCP, TLS and the login.
        // A quarter second later than the clients' own wait, so that a client hears 57014 (it waited too long)
        // rather than this opening's failure.
        let startupTimeout = loop.scheduleTask(in: timeout + .milliseconds(250)) {
            server.openingTimedOut(after: timeout)
        }
        let started = connected.flatMap { server.startupFuture }
        started.whenComplete { _ in startupTimeout.cancel() }
        started.flatMap { self.prewarm(server) }.whenComplete { result in
            switch result {
            case .success:
                // Strong: the closure runs once and is dropped when the connection closes. A weak capture would give
                // the pool a side table, and every lease retains the pool.
                server.onClose = { server in self.connectionClosed(server) }
                self.lock.withLock {
                    if self.cachedReport == nil { self.cachedReport = ParameterReport(server.parameters) }
                }
                let now = NIODeadline.now().uptimeNanoseconds
                let outcome = self.lock.withLock { slot.machine.connectionOpened(server, now: now) }
                self.logger.debug("server connection opened", metadata: ["server_id": "\(server.id)"])
                if case .keptIdle = outcome,
                   self.retiredConnectionsGo || self.paused || server.epoch < self.reconnectEpoch.load {
                    // Opened for a pool that a reload replaced (or RECONNECT renewed) meanwhile, and no one waits
                    // for it: closed now, or it would stay idle where no janitor looks. PAUSE and KILL leave no
                    // idle connection open either (a client that waited when they came asked for this one).
                    self.discard(server)
                    return
                }
                self.carryOut(outcome, slot: slot)
                for mirror in slot.mirrors { self.openMirror(mirror, of: server, on: loop) }
            case .failure(let error):
                server.close()
                self.forget(server, in: slot)
                if !slot.isPrimary { self.ban(slot: slot, reason: "FailedConnect") }
                self.logger.warning("could not open server connection", metadata: [
                    "server": "\(slot.address)", "error": "\(error)"])
                let stranded = self.lock.withLock { slot.machine.connectionFailed() }
                // Names the shard and the server's role too (SPEC 1d), for pools with several.
                let server = "shard \(slot.address.shard) \(slot.address.role) \(slot.address)"
                let failure = PoolError.serverUnavailable(pool: self.name, server: server, reason: "\(error)")
                for ref in stranded {
                    let waiter = ref.waiter
                    waiter.eventLoop.execute { waiter.leaseFailed(failure) }
                }
            }
        }
    }

    /// The `prewarmer` plugin: each query in turn on a new connection, before anyone uses it. A failing query fails
    /// the opening (as in PgCat). A query may take long (`pg_prewarm` of a big table): each gets its own 5 minutes.
    private func prewarm(_ server: ServerConnection) -> EventLoopFuture<Void> {
        var done = server.eventLoop.makeSucceededVoidFuture()
        for query in plugins?.prewarmQueries ?? [] {
            done = done.flatMap {
                ServerProbe.run(query, on: server, timeout: Self.prewarmTimeout).map { _ in }
                    .flatMapErrorThrowing { error in throw PrewarmError(query: query, reason: "\(error)") }
            }
        }
        return done
    }

    static let prewarmTimeout = TimeAmount.minutes(5)

    struct PrewarmError: Error, CustomStringConvertible {
        var query: String
        var reason: String
        var description: String { "prewarmer query failed (\(query)): \(reason)" }
    }

    /// Closes idle connections past `idle_timeout`/`server_lifetime`, opens up to `min_pool_size`, and marks those
    /// idle longer than `healthcheck_delay` to be checked before their next use.
    func sweep(loops: () -> EventLoop) {
        let now = NIODeadline.now().uptimeNanoseconds
        // (min_pool_size waits for RESUME, as no connection stays; a retired pool opens none for it)
        let topUp = !waitsForClientLogin && !paused && !isRetired
        let checkAfter = UInt64(max(0, checkoutCheckDelay.load)) * 1_000_000
        for slot in slots {
            let (close, open) = lock.withLock {
                if checkAfter > 0, now > checkAfter {
                    slot.machine.markIdle(since: now - checkAfter) { $0.checkBeforeUse = true }
                }
                return slot.machine.sweep(now: now, topUp: topUp)
            }
            for server in close { server.close() }
            for _ in 0..<open { self.open(slot, on: loops()) }
        }
    }

    /// Closes every idle connection (pool retired or shutting down).
    func closeIdle() {
        for slot in slots {
            let drained = lock.withLock { slot.machine.drainIdle() }
            for server in drained { server.close() }
        }
    }

    /// Counts for observability.
    func counts() -> (idle: Int, active: Int, connecting: Int, waiting: Int) {
        lock.withLock {
            slots.reduce(into: (0, 0, 0, 0)) { acc, slot in
                acc.0 += slot.machine.idleCount
                acc.1 += slot.machine.leasedCount
                acc.2 += slot.machine.connecting
                acc.3 += slot.machine.waitingCount
            }
        }
    }

    /// A mirror connection for `server` (same credentials, same event loop); failures are logged and ignored.
    private func openMirror(_ address: ServerAddress, of server: ServerConnection, on loop: EventLoop) {
        var credentials = self.credentials
        credentials.database = address.database
        let timeout = TimeAmount.milliseconds(Int64(max(settings.connectTimeout, 1)))
        openOneOff(address, credentials: credentials, timeout: timeout, on: loop).whenComplete { result in
            switch result {
            case .success(let mirror):
                server.addMirror(mirror)
            case .failure(let error):
                self.logger.info("mirror unavailable", metadata: ["mirror": "\(address)", "error": "\(error)"])
            }
        }
    }

    /// A connection outside the pool's accounting (health probes, auth_query, mirrors), closed by the caller.
    func openOneOff(_ address: ServerAddress, credentials: ServerCredentials, timeout: TimeAmount,
                    on loop: EventLoop) -> EventLoopFuture<ServerConnection> {
        let server = ServerConnection(id: 0, address: address, slotIndex: Int.max, credentials: credentials,
                                      eventLoop: loop, keyCache: keyCache, connector: connector,
                                      statementCacheSize: 0, logger: logger)
        let connected = connector.connect(host: address.host, port: address.port, on: loop,
                                          timeout: timeout, handler: server)
        connected.whenFailure { error in server.connectFailed(error) }
        let deadline = loop.scheduleTask(in: timeout) { server.close() }
        return connected.flatMap { server.startupFuture }.map { server }.always { _ in deadline.cancel() }
    }
}
