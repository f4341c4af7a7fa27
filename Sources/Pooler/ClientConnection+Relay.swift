/// Client -> server: dispatching the client's messages, checking out a server when one is needed,
/// and answering locally what needs no server (a lone Sync or Flush, Terminate, errors the pooler raised).
import Config
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Processes as much of `inbox` as the current state allows.
    func drive() {
        guard case .ready = phase else { return }
        while !waiting, fanOut == nil, case .ready = phase, var buffer = inbox, buffer.readableBytes > 0 {
            inbox = nil
            let progressed: Bool
            do {
                if discardUntilSync {
                    progressed = try discard(&buffer)
                } else if let server {
                    progressed = try relay(&buffer, to: server)
                } else {
                    progressed = try dispatchIdle(&buffer)
                }
            } catch {
                fatal(.protocolViolation, "invalid message from client: \(error)")
                return
            }
            if case .closed = phase { return }
            if buffer.readableBytes > 0 {
                if let pending = inbox {  // a callback queued more bytes meanwhile; keep order
                    var pending = pending
                    buffer.writeBuffer(&pending)
                }
                inbox = buffer
            }
            if !progressed { break }
        }
        // drive() also runs outside a client read (after a release, a lease, a timeout): flush what it sent.
        server?.flush()
    }

    /// Checks a frame header from the client.
    private func check(_ header: FrameHeader) throws(WireError) {
        guard FrontendID.isValid(header.id), header.id != FrontendID.password else {
            throw WireError(.unexpectedMessage(header.id))
        }
    }

    /// With a server: forward whole runs of frames as one slice, noting each request in the server's tracker.
    /// Named prepared statements (transaction mode) are rewritten to their server-side names on the way.
    private func relay(_ buffer: inout ByteBuffer, to server: ServerConnection) throws(WireError) -> Bool {
        if awaitingSettingsReplay { return false }  // (resumed by settingsReplayAnswered)
        if awaitingResultShape { return false }  // (resumed by serverRead once the Describe is answered)
        // (resumed by serverRead at the unit's ReadyForQuery; COPY data the reset's Query asked for goes on)
        if restoreAfterUnit != nil, !server.tracker.copyIn { return false }
        // A describe-only unit ended early (automatic sharding, read/write splitting): what follows is routed again
        // once that Sync is answered.
        if server.tracker.awaitsInjectedSync { return false }
        let rewriting = rewritesStatements
        var detectsPins = releasesAfterTransaction
        // GPU inference sent on a connection that is not an inference one (the transaction was routed elsewhere).
        let countsMisplaced = inference == nil && !inferenceFallback && pool?.mlEnabled == true
        let plugins = pool?.queryPlugins
        let tracksUnnamed = poolMode == .transaction
        // A client with login settings: its RESET ALL / DISCARD ALL / RESET name is followed by the pooler's own
        // query setting them again (PostgreSQL's session defaults are the login values; the server's are not).
        let restoresLogin = !loginTrackedParameters.isEmpty || !sessionSettings.isEmpty
        // Pipelined transactions on a server chosen for reads: what follows a Sync or Query that may end the
        // transaction is routed again once that answer is in (a write after a read must not reach the replica).
        // A read that `read_your_writes_window` sent to the primary too: a write behind it opens a new window.
        // With automatic sharding every transaction is routed by its own key.
        let shardsEach = shardsEachTransaction
        // (In session mode the statements' texts are kept here, for the Binds to come.)
        let notesStatements = shardsEach && poolMode == .session
        let routedForReads = (leaseRole != .primary || primaryForReadYourWrites) && routesEachTransaction
        let holdsAtTransactionEnd = releasesAfterTransaction && (routedForReads || shardsEach)
        var endsUnitForBind = false
        var endsForRestore = false  // (a restore after a reset was set in this call: stop after that frame)
        if server.requestStart == nil {
            let now = NIODeadline.now()
            server.requestStart = now
            if server.transactionStart == nil { server.transactionStart = now }
            if statementTimer == nil { armStatementTimer() }
        }
        let end = buffer.writerIndex
        let startIndex = buffer.readerIndex
        var index = startIndex
        var runStart = index
        var terminate = false
        var unsynced = server.unsynced
        // The server already failed a message and skips everything up to the client's Sync: drop those messages
        // here too, so that what they would do to statement names never happens (as in Postgres).
        if server.tracker.serverSkipping { skipToSync = true }

        func flushRun(upTo: Int) {
            if upTo > runStart {
                server.send(buffer.getSlice(at: runStart, length: upTo - runStart)!)
            }
            runStart = upTo
        }

        while index < end {
            if scanner.isMidFrame {
                index += scanner.consumeSkip(available: end - index)
                continue
            }
            // (Inside a transaction too: a pipelined COMMIT ends it, and a write after it needs the primary.)
            // (Not in COPY FROM STDIN: its data streams while its Query is unanswered.)
            // (Also while the pooler's restore after a RESET is unanswered: the next transaction is routed anew.)
            if holdsAtTransactionEnd, server.tracker.awaitsClientSyncPoint || server.tracker.awaitsRestore,
               !server.tracker.copyIn { break }
            guard let header = FrameHeader.peek(buffer, at: index) else { break }
            try header.validate(limit: maxMessageSize)
            try check(header)
            if header.id == FrontendID.terminate {
                terminate = true
                break
            }
            let whole = end - index >= header.frameSize
            // Which statement the frame names, read once for the rewrite (named) and the tracking (unnamed).
            let reference = rewriting || tracksUnnamed ? StatementReference(header, in: buffer, at: index) : .none
            let needsRewrite = rewriting && Self.mayNeedRewrite(header, reference, in: buffer, at: index)
            if needsRewrite && !skipToSync && server.tracker.hasUnresolvedStatementsBeforeSync {
                // An earlier batch may still fail a Parse or Close this message depends on: wait for its answer.
                awaitingStatementOutcome = true
                break
            }
            let isStatementText = header.id == FrontendID.query || header.id == FrontendID.parse
            let inspectsText = detectsPins && isStatementText
            let pluginsInspect = plugins != nil && isStatementText
            let unnamedUse = tracksUnnamed ? Self.unnamedStatementUse(header.id, reference) : .none
            let checksShard = shardsEach && header.id == FrontendID.bind
            // (held whole however large, as a Bind: a big multi-row INSERT must not reach the wrong shard)
            let checksQueryShard = shardsEach && header.id == FrontendID.query && !takeQueryDecidedAtLease()
            let inspectsReset = restoresLogin && header.id == FrontendID.query && header.payloadSize < 1024
            // A reset through the extended protocol: its Parse is remembered, a Bind of it restores after the Sync
            // (a Bind's statement name is near its start: the rest of a large Bind need not be in yet).
            let inspectsResetParse = restoresLogin && header.id == FrontendID.parse
                && (header.payloadSize < 1024 || !resetStatements.isEmpty)
            let inspectsResetStatement = inspectsResetParse || (!resetStatements.isEmpty || !restoreAtSync.isEmpty)
                && (header.id == FrontendID.bind || header.id == FrontendID.close)
            let notesStatement = notesStatements
                && (header.id == FrontendID.parse || header.id == FrontendID.close || header.id == FrontendID.query)
            let mustBeWhole = needsRewrite || inspectsText || pluginsInspect || skipToSync || checksShard || inspectsReset
                || notesStatement
                || checksQueryShard || header.id == FrontendID.sync && !restoreAtSync.isEmpty
                || inspectsResetParse
                || header.id == FrontendID.describe || unnamedUse == .parse || unnamedUse == .undecided
            if mustBeWhole && !whole { break }
            if skipToSync && header.id != FrontendID.sync {
                flushRun(upTo: index)  // dropped: Postgres would skip it after the error
                heldStatement = nil  // (a held Bind dropped so: its hold's answer concerns no Bind)
                if tracksUnnamed && unnamedUse == .parse {
                    let payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
                    forgetUnnamedStatement(ifParse: header.id, payload)
                }
                index += header.frameSize
                runStart = index
                continue
            }
            if knowsResultShapes, needsRewrite, header.id == FrontendID.bind, !server.tracker.serverSkipping {
                let frameStart = index
                if holdsBindForResultShape(buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!,
                                           on: server, before: { flushRun(upTo: frameStart) }) {
                    unsynced = true
                    break
                }
            }
            if checksShard, let shard = bindNamesAnotherShard(
                buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!, on: server) {
                // A Bind that came after the lease names another shard than this request's: refused, and the
                // server made to fail the unit too, so that it rolls back what the unit did before it.
                flushRun(upTo: index)
                refuseOnServer(server, .featureNotSupported, "this statement belongs on shard \(shard), the request it "
                               + "is part of on shard \(server.address.shard): send statements for different shards "
                               + "with a Sync each")
                skipToSync = true
                index += header.frameSize
                runStart = index
                continue
            }
            if checksQueryShard, let refusal = queryRefusal(
                buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!, on: server) {
                flushRun(upTo: index)
                refuseOnServer(server, .featureNotSupported, refusal, endsUnit: true)
                index += header.frameSize
                runStart = index
                continue
            }
            if inspectsResetStatement { noteResetStatement(header, in: buffer, at: index) }
            if notesStatement { noteSessionStatement(header, in: buffer, at: index) }
            if pluginsInspect, let plugins {
                let payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
                let frameStart = index
                if applyPlugins(plugins, header.id, payload, on: server, before: { flushRun(upTo: frameStart) }) {
                    if header.id == FrontendID.parse { unsynced = true }
                    index += header.frameSize
                    runStart = index
                    continue
                }
            }
            switch unnamedUse {
            case .parse:
                noteUnnamedParse(buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!, on: server)
            case .use:
                let frameStart = index
                ensureUnnamedStatement(on: server, before: { flushRun(upTo: frameStart) })
            case .close:
                savedUnnamedParse = nil
            case .none, .undecided:
                if tracksUnnamed && header.id == FrontendID.query { savedUnnamedParse = nil }  // as Postgres
            }
            if !rewriting, tracksUnnamed, header.id == FrontendID.parse, reference != .unnamed, !server.dirtyPrepared {
                // Without the statement cache a named Parse reaches the server under the client's own name:
                // DEALLOCATE ALL before the next client, who may use the same name (as PgCat's mark_dirty).
                server.dirtyPrepared = true
            }
            if inspectsText {
                let found = Self.sessionEffects(header, in: buffer, at: index)
                if found.setsConfig { server.dirtySettings = true }  // (RESET ALL before the next client)
                if let reason = found.pin {
                    pinSession(reason, on: server)
                    detectsPins = false
                }
            }
            if countsMisplaced, whole, header.id == FrontendID.query || header.id == FrontendID.parse {
                noteMisplacedInference(header, in: buffer, at: index)
            }
            if needsRewrite, whole {
                let payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
                let frameStart = index
                let handled = rewrite(header.id, payload, on: server, before: { flushRun(upTo: frameStart) })
                if handled {
                    if header.id != FrontendID.query { unsynced = true }
                    index += header.frameSize
                    runStart = index
                    continue
                }
            }
            switch header.id {
            case FrontendID.sync:
                unsynced = false
                skipToSync = false
                server.tracker.sent(header.id)
                // An error before this Sync makes the server skip the unit's unnamed Parse: only within its own unit
                // is the unnamed statement surely this client's (ClientConnection+UnnamedStatement).
                server.unitEnded()
                if !restoreAtSync.isEmpty {
                    let effects = restoreAtSync
                    restoreAtSync = []
                    restoreAfterUnit = loginSettingsRestore(for: effects, on: server)
                    endsForRestore = restoreAfterUnit != nil
                }
            case FrontendID.describe:
                unsynced = true
                let kind = buffer.getInteger(at: index + FrameHeader.size, as: UInt8.self)
                server.tracker.sent(header.id, describesStatement: kind == UInt8(ascii: "S"))
            case FrontendID.query, FrontendID.functionCall:
                server.tracker.sent(header.id)
                server.unitEnded()
                if inspectsReset {
                    restoreAfterUnit = loginSettingsRestore(queryAt: index, header, in: buffer, on: server)
                    endsForRestore = restoreAfterUnit != nil
                }
            case FrontendID.flush:
                if !server.tracker.isEmpty { server.awaitsFlushedReplies = true }
                // asyncpg prepares (Parse, Describe, Flush) before it binds: the key is in the Bind to come, and with
                // read/write splitting what comes next may write (a Bind of a write, a COPY Query). This server only
                // describes; a Sync of the pooler's own ends its part, and what follows is routed anew. (Not after
                // a named Parse the server holds under the client's name: the statement cache is off.)
                endsUnitForBind = whole && releasesAfterTransaction && pin == nil && !server.boundInUnit
                    && server.status == .idle && !server.tracker.serverSkipping
                    && (automaticShardAwaitsBind || routedForReads && !server.dirtyPrepared)
            case FrontendID.copyData, FrontendID.copyDone, FrontendID.copyFail:
                server.tracker.sent(header.id)
            default:
                unsynced = true
                server.tracker.sent(header.id)
                if header.id == FrontendID.bind || header.id == FrontendID.execute { server.boundInUnit = true }
            }
            if planRetry != nil {
                recordPassThrough(whole ? buffer.getSlice(at: index, length: header.frameSize) : nil)
            }
            if whole {
                index += header.frameSize
            } else {
                scanner.startSkip(header.frameSize - (end - index))
                index = end
            }
            // The restore after a reset waits for this unit's answer: it runs only if the unit did not fail, and
            // the client's next messages follow it.
            // (also after a COPY's end while its Query's restore waits: what follows waits for the restore too)
            if endsUnitForBind || endsForRestore
                || (header.id == FrontendID.copyDone || header.id == FrontendID.copyFail) && restoreAfterUnit != nil { break }
        }
        flushRun(upTo: index)
        if endsUnitForBind {
            var sync = allocate(8)
            MessageEncoder.sync(into: &sync)
            server.tracker.append(.injected(.sync))
            server.send(sync)
            unsynced = false
            server.unitEnded()
        }
        server.unsynced = unsynced
        buffer.moveReaderIndex(to: index)
        emitDueReplies(from: server)
        server.endFlushedWaitIfAnswered()  // (the pooler may have answered all of it: a Parse the server had)
        if releasesAfterTransaction, server.isCleanlyIdle, !scanner.isMidFrame, self.server === server {
            releaseServer()  // everything was answered here (e.g. DEALLOCATE of a protocol-level statement)
        }
        if terminate {
            buffer.clear()
            closeClient()
            return false
        }
        return index > startIndex
    }

    /// Answers the client's current message with ERROR `state` `message` in its place among the server's replies,
    /// and sends the server a Parse that fails, so that it skips the rest of the unit up to the client's Sync and
    /// rolls back what the unit did (an implicit transaction) or fails the transaction block, as after an error of its
    /// own. For a Query (`endsUnit`) a Sync of the pooler's follows: the server's ReadyForQuery ends its answer.
    func refuseOnServer(_ server: ServerConnection, _ state: SQLState, _ message: String,
                        endsUnit: Bool = false) {
        var error = allocate(message.utf8.count + 64)
        MessageEncoder.errorResponse(severity: .error, state: state, message: message, into: &error)
        server.tracker.append(.synthetic(error))
        failUnitOnServer(server)
        guard endsUnit else { return }
        var sync = allocate(8)
        MessageEncoder.sync(into: &sync)
        server.tracker.sent(FrontendID.sync)
        server.send(sync)
        server.unitEnded()
    }

    /// Makes the server fail the client's current unit as the pooler's own error just did: a Parse meant to fail
    /// (its error is dropped), after which the server skips to the client's Sync, rolls back what the unit did
    /// (an implicit transaction) or marks the transaction block failed, and says so in its ReadyForQuery.
    func failUnitOnServer(_ server: ServerConnection) {
        var parse = allocate(64)
        MessageEncoder.frame(FrontendID.parse, into: &parse) {
            $0.writeString("pgcat_refused\0pgcat refused this unit\0")
            $0.writeInteger(Int16(0))
        }
        server.tracker.append(.injected(.refusal))
        server.send(parse)
    }

    /// What the statement text of a whole Query or Parse frame at `index` does to the session (SessionPin.inspect).
    static func sessionEffects(_ header: FrameHeader, in buffer: ByteBuffer,
                               at index: Int) -> (pin: SessionPin?, setsConfig: Bool) {
        var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
        if header.id == FrontendID.parse {
            guard payload.readNullTerminatedString() != nil else { return (nil, false) }
        }
        return SessionPin.inspect(payload)
    }

    /// Pins this client to its server connection (transaction mode) and tells it so with a NOTICE, placed in the
    /// reply order after what the server already owes.
    func pinSession(_ reason: SessionPin, on server: ServerConnection?) {
        guard pin == nil, poolMode == .transaction else { return }
        pin = reason
        logger.info("session pinned to its server connection", metadata: ["reason": "\(reason.rawValue)"])
        var notice = allocate(200)
        MessageEncoder.errorResponse(
            severity: .notice, state: SQLState("01000"),
            message: "pgcat: \(reason.rawValue) pins this session to one server connection until it disconnects",
            hint: "Transaction pooling is off for this client; its server connection is reset with DISCARD ALL when it leaves.",
            id: BackendID.noticeResponse, into: &notice)
        if let server {
            server.tracker.append(.synthetic(notice))
        } else {
            write(notice)
        }
    }

    /// Without a server: answer what needs none, otherwise check one out.
    private func dispatchIdle(_ buffer: inout ByteBuffer) throws(WireError) -> Bool {
        guard let header = FrameHeader.peek(buffer, at: buffer.readerIndex) else { return false }
        try header.validate(limit: maxMessageSize)
        try check(header)
        if let owed = owedAnswer {
            owedAnswer = nil
            // The client's transaction or session is gone: its next message gets the FATAL (never an ERROR that
            // leaves it connected and idle, whose next statements would commit the rest of its transaction alone).
            buffer.clear()
            if header.id == FrontendID.terminate {
                closeClient()
                return false
            }
            switch owed {
            case .idleTransactionTimeout:
                fatal(.idleInTransactionSessionTimeout, "terminating connection due to idle-in-transaction timeout")
            case .sessionLost(let message):
                fatal(.connectionFailure, message)
            }
            return false
        }
        if deferredTransactionFailed, let handled = answerInFailedTransaction(&buffer) { return handled }
        if header.id == FrontendID.parse || !poolerCommandStatements.isEmpty && header.id != FrontendID.query
            && header.id != FrontendID.terminate,
           let handled = answerPoolerCommandUnit(&buffer) {
            return handled
        }
        switch header.id {
        case FrontendID.terminate:
            buffer.clear()
            closeClient()
            return false
        case FrontendID.sync:
            // Nothing is pending on any server: Postgres would just say it is idle.
            guard buffer.readableBytes >= header.frameSize else { return false }  // (a Sync may claim a payload)
            buffer.moveReaderIndex(forwardBy: header.frameSize)
            sendReady()
            return true
        case FrontendID.parse:
            guard buffer.readableBytes >= header.frameSize else { return false }
            let payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: header.payloadSize)!
            if let plugins = pool?.queryPlugins, applyPluginsWithoutServer(plugins, FrontendID.parse, payload) {
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            if parseWithoutServer(payload) {
                awaitingRestOfUnit = false
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            guard noteShardComment(header, in: buffer) else {
                forgetUnnamedStatement(ifParse: header.id, payload)
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            awaitingRestOfUnit = awaitsRestOfUnit(buffer)
            if awaitingRestOfUnit { return false }
            return leaseForStatements(&buffer)
        case FrontendID.flush, FrontendID.copyData, FrontendID.copyDone, FrontendID.copyFail:
            // Nothing to flush; copy messages outside COPY are ignored by Postgres too.
            guard buffer.readableBytes >= header.frameSize else { return false }
            buffer.moveReaderIndex(forwardBy: header.frameSize)
            return true
        case FrontendID.query:
            guard buffer.readableBytes >= header.frameSize else { return false }
            let payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: header.payloadSize)!
            if answerPoolerCommand(payload) || deallocatePoolerCommand(payload) {
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            if let plugins = pool?.queryPlugins, applyPluginsWithoutServer(plugins, FrontendID.query, payload) {
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            guard noteShardComment(header, in: buffer) else {
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            if deferredBegin != nil, endDeferredTransaction(payload) {
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            if defersBegin(payload) {
                deferBegin(buffer.getSlice(at: buffer.readerIndex, length: header.frameSize)!, payload: payload)
                buffer.moveReaderIndex(forwardBy: header.frameSize)
                return true
            }
            return leaseForStatements(&buffer)
        default:
            if awaitsRestOfUnit(buffer) { return false }
            // Leased at once: the next round relays the buffer. Otherwise drive() keeps it until the lease.
            return leaseForStatements(&buffer)
        }
    }

    /// With read/write splitting, extended-protocol messages are routed together with everything up to their Sync
    /// (or a Flush, after which the client waits for answers), as PgCat does: a write later in the same implicit
    /// transaction must take the whole of it to the primary. Past `unitBufferLimit` bytes they go with what is there.
    private func awaitsRestOfUnit(_ buffer: ByteBuffer) -> Bool {
        let shards = shardsEachTransaction
        guard routesEachTransaction || shards else { return false }
        var index = buffer.readerIndex
        while let header = FrameHeader.peek(buffer, at: index) {
            switch header.id {
            case FrontendID.sync, FrontendID.flush, FrontendID.query, FrontendID.functionCall, FrontendID.terminate:
                return false
            default: break
            }
            guard header.length >= 4 else { return false }  // malformed: the relay refuses it
            if buffer.writerIndex - index < header.frameSize {
                // A Bind carries the sharding key's value: it is waited for whole, however large.
                if shards, header.id == FrontendID.bind, header.frameSize <= maxMessageSize { return true }
                break
            }
            index += header.frameSize
        }
        return buffer.readableBytes < Self.unitBufferLimit
    }

    static let unitBufferLimit = 1 << 20

    /// Leases a server for the transaction the messages at the front of `buffer` start: the shard (automatic key),
    /// then ML routing (inference pools), then read/write routing. True when leased at once, or when the request
    /// was refused here (an error was sent and its messages are being skipped).
    private func leaseForStatements(_ buffer: inout ByteBuffer) -> Bool {
        if let current = pool, current.isRetired { adoptReloadedPool() }
        if let shard = routing.shard, let pool, shard >= pool.shardCount {
            // A reload removed the shard the client chose (SET SHARD, a comment): refused until it chooses another,
            // as PgCat's checkout fails; before, its statements went to another shard without a word.
            sendError(SQLState("22023"), "shard \(shard) is not configured \(pool.shardCount) (the pool has "
                      + "\(pool.shardCount) shards since a reload): choose another with SET SHARD TO")
            discardUntilSync = true
            return true
        }
        guard prepareAutomaticShard(buffer) else { return true }
        if let handled = fanOutIfNeeded(&buffer) { return handled }
        // A deferred BEGIN decides the transaction's role, as when it was leased by itself (a plain BEGIN: the
        // primary, for the whole transaction; READ ONLY: a replica); only its shard comes from this request.
        if let begin = deferredBegin { return requestServer(role: targetRole(for: begin)) }
        if let leased = requestForML(buffer) { return leased }
        return requestServer(role: targetRole(for: buffer))
    }

    /// Drops client messages after a pooler-made error, up to and including the next Sync or Query,
    /// which is answered with ReadyForQuery (as Postgres does after an error).
    private func discard(_ buffer: inout ByteBuffer) throws(WireError) -> Bool {
        var reachedSync = false
        var terminate = false
        let count = try scanner.scan(buffer, limit: maxMessageSize, classify: { header throws(WireError) in
            try check(header)
            switch header.id {
            case FrontendID.sync, FrontendID.query, FrontendID.functionCall, FrontendID.parse:
                return .inspect
            case FrontendID.terminate:
                terminate = true
                return .stop
            default:
                return .passThrough
            }
        }, frame: { header, payload in
            if header.id == FrontendID.parse {
                forgetUnnamedStatement(ifParse: header.id, payload)
                return true
            }
            reachedSync = true
            return false
        })
        buffer.moveReaderIndex(forwardBy: count)
        if reachedSync {
            discardUntilSync = false
            sendReady()
            return true
        }
        if terminate {
            buffer.clear()
            closeClient()
            return false
        }
        return count > 0
    }
}

extension ClientConnection {
    /// The pooler's query that sets the client's login values again after the Query at `index`, when that Query is
    /// a reset (SettingsReset) of any of them; nil otherwise.
    func loginSettingsRestore(queryAt index: Int, _ header: FrameHeader, in buffer: ByteBuffer,
                              on server: ServerConnection) -> ByteBuffer? {
        let start = index + FrameHeader.size
        guard SettingsReset.mightMatch(buffer, payload: start..<(start + header.payloadSize)),
              let effects = SettingsReset.effects(query: buffer.getSlice(at: start, length: header.payloadSize)!)
        else { return nil }
        return loginSettingsRestore(for: effects, on: server)
    }

    /// Sends the pooler's restore query behind what was sent; its replies are the pooler's (ResponseTracker).
    func injectRestore(_ restore: ByteBuffer, on server: ServerConnection) {
        server.tracker.append(.injected(.restore))
        server.send(restore)
        // Login settings are on the connection again whatever a DISCARD ALL's reply records: the next client must
        // not inherit them (RESET ALL before it, as after a client's SET).
        server.dirtySettings = true
    }

    /// A Parse (remembers whether the statement is a reset; whole frames only), a Bind of a remembered reset
    /// statement (its reset is restored after the unit's Sync) or a Close of one.
    func noteResetStatement(_ header: FrameHeader, in buffer: ByteBuffer, at index: Int) {
        let start = index + FrameHeader.size
        if header.id == FrontendID.parse {
            // The statement's name ends at the first NUL; the text follows. Most Parses are unnamed and no reset:
            // find out without a copy, and touch the dictionary only when it holds something.
            let nameLength: Int
            if buffer.getInteger(at: start, as: UInt8.self) == 0 {
                nameLength = 0
            } else {
                guard let length = buffer.withUnsafeReadableBytes({ raw in
                    raw[(start - buffer.readerIndex)...].firstIndex(of: 0).map { $0 - (start - buffer.readerIndex) }
                }) else { return }
                nameLength = length
            }
            guard nameLength < header.payloadSize else { return }  // (malformed: the server will say so)
            let textStart = start + nameLength + 1
            let textLength = header.payloadSize - nameLength - 1
            guard !resetStatements.isEmpty || header.payloadSize < 1024
                    && SettingsReset.mightMatchStatement(buffer, at: textStart, length: textLength) else { return }
            noteResetStatement(named: buffer.getString(at: start, length: nameLength) ?? "",
                               definition: buffer.getSlice(at: textStart, length: textLength)!)
        } else {
            // (what of the frame is in: a Bind's names come first)
            var payload = buffer.getSlice(at: start, length: min(header.payloadSize, buffer.writerIndex - start))!
            if header.id == FrontendID.close {  // Close of a statement: it is no reset any more
                guard let statement = payload.readStatementName() else { return }
                resetStatements[statement] = nil
                if !setStatements.isEmpty { setStatements[statement] = nil }
                return
            }
            guard payload.readNullTerminatedString() != nil, let statement = payload.readNullTerminatedString(),
                  let effect = resetStatements[statement] ?? (restoreAtSync.isEmpty ? nil : setStatements[statement])
            else { return }
            // In order: a SET after a reset keeps its value (a SET with no reset before it needs nothing, so the
            // SETs are looked up only after one).
            restoreAtSync.removeAll { $0 == effect }
            restoreAtSync.append(effect)
        }
    }

    /// Whether the statement `name` is a reset; also for a named Parse the pooler answered itself (a definition its
    /// servers already have). `definition`: the Parse payload after the name.
    func noteResetStatement(named name: String, definition: ByteBuffer) {
        guard !loginTrackedParameters.isEmpty || !sessionSettings.isEmpty else { return }
        var reset: SettingsReset?
        if definition.readableBytes < 1024,
           SettingsReset.mightMatchStatement(definition, at: definition.readerIndex, length: definition.readableBytes) {
            var text = definition
            reset = text.readNullTerminatedString().flatMap { SettingsReset.effect(ofStatement: $0) }
        }
        // (SETs apart: every Bind of this client is looked at while `resetStatements` holds something)
        let asReset = reset?.resets == true ? reset : nil, asSet = reset?.resets == false ? reset : nil
        if asReset != nil || !resetStatements.isEmpty { resetStatements[name] = asReset }
        if asSet != nil || !setStatements.isEmpty { setStatements[name] = asSet }
    }

    /// The pooler's query setting the login values again that `effects` (resets and sets, in order) leave at the
    /// server's defaults; nil when there are none.
    func loginSettingsRestore(for effects: [SettingsReset], on server: ServerConnection) -> ByteBuffer? {
        let escaping = server.needsASCIILiterals
        let covered = { (name: String) in SettingsReset.restores(name, after: effects) }
        var sql = ""
        for (name, value) in loginTrackedParameters.sorted(by: { $0.key < $1.key }) where covered(name) {
            sql += StartupSettings.setReported(name, to: value, escapingNonASCII: escaping)
        }
        sql += StartupSettings.replay(from: [], known: false, to: sessionSettings.filter { covered($0.name) },
                                      escapingNonASCII: escaping)
        guard !sql.isEmpty else { return nil }
        var query = allocate(sql.utf8.count + 8)
        MessageEncoder.query(sql, into: &query)
        return query
    }
}
