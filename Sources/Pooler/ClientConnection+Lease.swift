/// Getting, holding and giving back a server connection: waiting with `connect_timeout`, replaying the client's
/// parameters, the idle-in-transaction timeout, and what happens when either side goes away.
import Config
import Failover
import NIOCore
import PostgresWire

extension ClientConnection {
    /// The shard a lease asks for: `SET SHARD` or a shard comment first, then the automatic sharding key.
    func leaseShard(in pool: ConnectionPool) -> Int? {
        routing.shard.flatMap { $0 < pool.shardCount ? $0 : nil } ?? automaticShard
    }

    /// Asks the pool for a server. Returns true when one was leased at once.
    @discardableResult
    func requestServer(role: TargetRole? = nil, affinityKey: String? = nil) -> Bool {
        if let current = pool, current.isRetired { adoptReloadedPool() }
        guard let pool else { return false }
        let loggingIn: Bool
        if case .awaitingParameters = phase { loggingIn = true } else { loggingIn = false }
        leaseRole = role
        leaseAffinityKey = affinityKey
        inferenceFallback = false
        switch pool.lease(for: self, role: role, bypassPause: loggingIn, affinityKey: affinityKey,
                          shard: leaseShard(in: pool)) {
        case .leased(let server):
            if loggingIn {
                waiting = true
                leaseGranted(server)  // reports the parameters and gives the server back
                return false
            }
            attach(server)
            return true
        case .waiting:
            waiting = true
            let now = eventLoop.now
            stats.startWaiting(now: now)
            let deadline = now + .milliseconds(Int64(pool.settings.connectTimeout))
            waitDeadline = deadline
            armWaitTimer(deadline)
            return false
        }
    }

    /// A reload replaced this client's pool: move to the new one between transactions. Statement names carry over
    /// (the new pool shares the registry). If the pool was removed, the client stays on the old one until it leaves.
    func adoptReloadedPool() {
        guard let fresh = runtime.pool(database: database, user: user), fresh !== pool else { return }
        logger.debug("moving to the reloaded pool")
        pool = fresh
        poolMode = fresh.settings.poolMode
        rewritesStatements = poolMode == .transaction && fresh.statementCacheSize > 0
    }

    /// One timer serves many waits: it is armed at most once at a time and not cancelled when a lease arrives
    /// (cheaper than a timer per wait on a busy pool); when it fires it re-arms for a later wait's deadline.
    func armWaitTimer(_ deadline: NIODeadline) {
        if let armed = armedWaitDeadline, waitTimer != nil {
            guard deadline < armed else { return }  // the armed timer comes first and re-arms for this wait
            waitTimer?.cancel()  // a shorter wait (queue_timeout) than the one armed (connect_timeout)
            waitTimer = nil
        }
        armedWaitDeadline = deadline
        waitTimer = eventLoop.scheduleTask(deadline: deadline) { [self] in waitTimerFired() }  // dropped in clientGone
    }

    private func waitTimerFired() {
        waitTimer = nil
        guard waiting, let deadline = waitDeadline else { return }
        if eventLoop.now < deadline {
            armWaitTimer(deadline)
        } else {
            waitTimedOut()
        }
    }

    private func waitTimedOut() {
        if inference != nil {
            inferenceWaitExpired()
            return
        }
        guard let pool else { return }
        let inCheck = pool.isInCheck(self)
        guard withdrawWait() else { return }
        stats.set(.idle)
        let message = "timed out waiting for a server connection (pool \(pool.database)/\(pool.user)"
            + "\(Self.waitTimeoutReason(pool, inCheck: inCheck)))"
        if case .awaitingParameters = phase {
            fatal(.queryCanceled, message)  // still logging in: there is no session to keep
            return
        }
        failRequest(.queryCanceled, message)
    }

    func leaseGranted(_ server: ServerConnection) {
        waiting = false
        let waited = stats.stopWaiting(now: eventLoop.now)
        server.stats.waitTime.add(waited)
        pool?.waitTimer?.record(nanoseconds: Int64(waited) * 1000)
        switch phase {
        case .awaitingParameters:
            let report = pool?.parameterReport ?? ParameterReport(server.parameters)
            if !settingsToCheck.isEmpty {
                checkSettings(on: server, then: report)
                return
            }
            pool?.release(server)
            welcome(report)
        case .ready:
            if let lease = inference {
                pool?.mlStats.waited(model: lease.label, nanoseconds: (eventLoop.now - lease.started).nanoseconds)
                attachForInference(server)
            } else {
                attach(server)
            }
            drive()
            server.flush()
            flushIfNeeded()
        case .closed, .startup, .authenticating, .lookingUpPassword:
            pool?.release(server)
        }
    }

    func leaseFailed(_ error: PoolError) {
        guard waiting else { return }  // a login borrowing a server waits too (requestServer sets it)
        waiting = false
        stats.stopWaiting(now: eventLoop.now)
        if case .ready = phase { stats.set(.idle) }
        guard case .serverUnavailable(let pool, let server, let reason) = error else { return }
        if let lease = inference, case .ready = phase, leaseRetries < 2 {
            // An inference server could not be reached (now banned): place the statement again.
            leaseRetries += 1
            abandonInferenceWait()
            logger.info("retrying inference on another server", metadata: ["failed": "\(server)", "reason": "\(reason)"])
            if requestInference(model: lease.model) {
                drive()
                flushIfNeeded()
            }
            return
        }
        abandonInferenceWait()
        if leaseRole != .primary, leaseRetries < 2, let current = self.pool, current.hasReplicas {
            // A read whose server could not be reached (now banned) tries another before the client hears of it.
            leaseRetries += 1
            logger.info("retrying on another server", metadata: ["failed": "\(server)", "reason": "\(reason)"])
            if requestServer(role: leaseRole), case .ready = phase {
                drive()
                flushIfNeeded()
            }
            return
        }
        let message = "no healthy server for pool \(pool): \(server): \(reason)"
        if case .awaitingParameters = phase {
            fatal(.connectionFailure, message)
            return
        }
        failRequest(.connectionFailure, message)
    }

    /// Why a wait for a server connection in `pool` ran out, as the end of the client's message.
    private static func waitTimeoutReason(_ pool: ConnectionPool, inCheck: Bool) -> String {
        if pool.isPaused { return " is paused by PAUSE or KILL; RESUME ends it" }
        if inCheck { return ": the idle connection it got has not answered its check before use yet" }
        // (a server that accepts connections but does not finish their logins: not a pool that is too small)
        let opening = pool.counts().connecting
        if opening > 0 { return ": \(opening) being opened, the server has not finished logging \(opening == 1 ? "it" : "them") in" }
        return " saturated"
    }

    /// Stops waiting for a server connection: false when the client was not waiting, or a connection is already
    /// on its way to it (`leaseGranted` then comes).
    func withdrawWait() -> Bool {
        guard waiting, let pool, pool.cancelWait(self) else { return false }
        waiting = false
        stats.stopWaiting(now: eventLoop.now)
        return true
    }

    /// A CancelRequest arrived while the request waits for a server connection: it ends like a cancelled statement.
    func cancelWaitingRequest() {
        guard withdrawWait() else { return }
        abandonInferenceWait()
        stats.set(.idle)
        failRequest(.queryCanceled, "canceling statement due to user request")
    }

    /// A request that never reached a server fails: ERROR, then skip to its Sync.
    func failRequest(_ state: SQLState, _ message: String) {
        sendError(state, message)
        discardUntilSync = true
        drive()
        flushIfNeeded()
    }

    /// Takes a leased server into use: replay the client's parameters where the server differs.
    func attachLeased(_ server: ServerConnection) { attach(server) }

    private func attach(_ server: ServerConnection) {
        self.server = server
        if !restoreAtSync.isEmpty { restoreAtSync = [] }  // (a unit whose Sync never reached a server: lost, skipped)
        if restoreAfterUnit != nil { restoreAfterUnit = nil }  // (its unit's answer never came: the server was lost)
        sentBegin = nil
        if planRetry != nil { planRetry = nil }  // (storing nil destroys the large payload: a profiled ~1%)
        leaseRetries = 0
        stats.set(.active)
        if leasesBeforeDirectWrites > 0 {
            leasesBeforeDirectWrites -= 1
            if leasesBeforeDirectWrites == 0 { startDirectWrites() }
        }
        server.noteApplicationName(applicationName)
        server.resetRelayState()
        server.attach(owner: self)
        if context != nil, !clientWritable {
            serverReadsPaused = true
            server.setReadEnabled(false)
        }
        let replay = parameterReplay(for: server)
        if let replay {
            server.tracker.append(.injected(.query))
            server.send(replay.query)
            // Login settings must be in place before the client's statements run (a statement_timeout, a role):
            // they wait for the answer, and a refusal fails the request instead of passing unseen. The request's
            // clock starts now, so query_timeout also covers a server that never answers the replay.
            if replay.appliesSettings {
                awaitingSettingsReplay = true
                let now = NIODeadline.now()
                server.requestStart = now
                server.transactionStart = now
            }
        }
        // (Not for a statement prepared before its Bind: that server only describes it, and the BEGIN goes with the
        // Bind, to its key's shard.)
        if deferredBegin != nil, !automaticShardAwaitsBind { sendDeferredBegin(on: server, after: replay) }
    }

    /// The pooler's own query bringing a server connection in line with its client.
    struct ParameterReplay {
        var query: ByteBuffer
        /// It changes login settings (`sessionSettings`), not only reported parameters.
        var appliesSettings: Bool
    }

    /// A Query setting the client's reported parameters and login settings where `server` differs, or nil when it
    /// does not.
    func parameterReplay(for server: ServerConnection) -> ParameterReplay? {
        var statements = ""
        // Login settings: most clients have none, and the connection none from its last client.
        if !(sessionSettings.isEmpty && server.appliedSettings.isEmpty),
           !server.appliedSettingsKnown || server.appliedSettings != sessionSettings {
            statements = StartupSettings.replay(from: server.appliedSettings, known: server.appliedSettingsKnown,
                                                to: sessionSettings, escapingNonASCII: server.needsASCIILiterals)
            server.appliedSettings = sessionSettings  // (a refusal discards the connection)
            server.appliedSettingsKnown = true
        }
        let appliesSettings = !statements.isEmpty
        // Fast path for every lease: this server was last found to hold values like this client's (clients of a
        // pool usually send the same ones), and nothing has changed on it since: no comparison by name.
        let mine = trackedFingerprint ?? ParameterFingerprint.of(trackedParameters)
        trackedFingerprint = mine
        if server.matchedFingerprint != mine {
            let differing = trackedParameters.filter { server.parameters[$0.key] != $0.value }
            let escaping = !differing.isEmpty && server.needsASCIILiterals
            for (name, value) in differing {
                statements += StartupSettings.setReported(name, to: value, escapingNonASCII: escaping)
            }
            if differing.isEmpty { server.matchedFingerprint = mine }
        }
        guard !statements.isEmpty else { return nil }
        var buffer = allocate(statements.utf8.count + 8)
        MessageEncoder.query(statements, into: &buffer)
        return ParameterReplay(query: buffer, appliesSettings: appliesSettings)
    }

    /// Gives the server back to the pool after a finished transaction.
    func releaseServer() {
        guard let server else { return }
        self.server = nil
        stats.set(.idle)
        finishInference()
        // Only a transaction that had to run on the primary opens the window, not a read the window sent there
        // (a client reading more often than the window would never get back to the replicas).
        if leaseRole == .primary, !primaryForReadYourWrites, pool?.routing.readYourWritesWindow ?? 0 > 0 {
            lastPrimaryTransaction = eventLoop.now
        }
        server.detach(owner: self)
        restoreReads(server)
        // The ReadyForQuery that ended the transaction was just timed: one clock read fewer per transaction.
        let readyAt = server.readyAt
        server.readyAt = 0
        pool?.release(server, at: readyAt)  // (held back there while a CancelRequest is on its way)
    }

    /// A server leaves this client: undo any backpressure pause on either side.
    func restoreReads(_ server: ServerConnection) {
        if serverReadsPaused {
            serverReadsPaused = false
            server.setReadEnabled(true)
        }
        if clientReadsPaused, let context { setClientReadEnabled(true, context: context) }
    }

    func serverClosed(_ server: ServerConnection, reason closeReason: String) {
        guard server === self.server else { return }
        let reason = server.fatalReason ?? closeReason
        self.server = nil
        inference?.failed = true
        finishInference()
        stats.set(.idle)
        cancelIdleTransactionTimer()
        let inTransaction = server.status != .idle
        // The client's own Syncs and Queries: the pooler's (a parameter replay, its own Sync) are owed nothing.
        let pending = server.tracker.pendingClientSyncPoints
        let unsynced = server.unsynced
        logger.warning("server connection lost", metadata: ["reason": "\(reason)"])
        if awaitingSettingsReplay {
            // Lost while applying the login settings: the client's request, held back, never reached the server.
            awaitingSettingsReplay = false
            settingsReplayError = nil
            sentBegin = nil
            scanner.reset()
            failRequest(.connectionFailure, "server connection lost: \(reason)")
            return
        }
        if inTransaction || !releasesAfterTransaction {
            // The transaction's work is lost. In session mode or a pinned session the session's state (settings,
            // temporary tables, LISTEN, locks) went with the connection too, so the session ends also when idle.
            let message = inTransaction ? "server connection lost inside a transaction: \(reason)"
                : "server connection lost, and with it this session's state: \(reason)"
            if pending == 0, !unsynced, !scanner.isMidFrame, (inbox?.readableBytes ?? 0) == 0, !closeWhenIdle {
                // The client awaits nothing: it gets the FATAL as the answer to its next message. Sent now, it can
                // reach libpq together with the last ReadyForQuery; libpq then takes it for a notice while idle,
                // and the next query reports only "server closed the connection unexpectedly". (Not while the
                // pooler shuts down: a drain must not wait for this client.)
                owedAnswer = .sessionLost(message)
                return
            }
            fatal(.connectionFailure, message)
            return
        }
        if pending > 0 || unsynced {
            sendError(.connectionFailure, "server connection lost: \(reason)")
            for _ in 0..<pending { sendReady() }
            if unsynced { discardUntilSync = true }
        }
        scanner.reset()
        flushIfNeeded()
        if let held = inbox, held.readableBytes > 0 {
            drive()  // messages the relay held for this server's answer go elsewhere now
            flushIfNeeded()
        }
    }

    /// The client is gone (or timed out) while holding `server`: make the server reusable or close it.
    /// `timedOut`: a timeout gave up on the server's answer, also one to a Flush (which a client that merely left
    /// does not wait for: the connection's reset drains it).
    func returnServer(_ server: ServerConnection, clientLeft: Bool, timedOut: Bool = false) {
        server.detach(owner: self)
        finishInference()
        if case .ready = phase { stats.set(.idle) }
        if serverReadsPaused {
            serverReadsPaused = false
            server.setReadEnabled(true)
        }
        guard let pool else { server.close(); return }
        let running = server.tracker.pendingSyncPoints > 0 || timedOut && server.awaitsFlushedReplies
        if server.isBroken || running || server.inCopy || scanner.isMidFrame || server.scanner.isMidFrame {
            // A statement is still running or a message is half-sent: cancel it and drop the connection.
            if running { server.sendCancel(on: eventLoop) }
            pool.discard(server)
            return
        }
        // A session-mode connection is reset per `cleanup_server_connections`; a pinned one always is (its locks,
        // LISTENs and temporary tables must not reach another client), and the pin ends with it.
        let resetSession = poolMode == .session && clientLeft && pool.cleanupServerConnections || pin != nil
        if pin != nil {
            logger.info("pinned session ends: resetting its server connection with DISCARD ALL")
            pin = nil
        }
        pool.reclaim(server, resetSession: resetSession, logger: logger)
    }

    // MARK: idle in transaction

    func startIdleTransactionTimer() {
        guard idleTransactionTimeout > 0, idleTransactionTimer == nil else { return }
        idleTransactionTimer = eventLoop.scheduleTask(in: .milliseconds(idleTransactionTimeout)) { [self] in
            idleTransactionTimedOut()
        }
    }

    func cancelIdleTransactionTimer() {
        idleTransactionTimer?.cancel()
        idleTransactionTimer = nil
    }

    private func idleTransactionTimedOut() {
        idleTransactionTimer = nil
        guard let server, server.tracker.pendingSyncPoints == 0, server.status != .idle, inbox == nil else { return }
        logger.info("idle transaction timeout: rolling back and releasing the server connection")
        self.server = nil
        owedAnswer = .idleTransactionTimeout
        returnServer(server, clientLeft: true)  // (the session ends: in session mode its state is reset too)
    }
}
