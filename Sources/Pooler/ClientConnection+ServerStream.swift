/// Server -> client: relaying the server's replies as slices of its reads, tracking ReadyForQuery, parameter
/// changes and COPY, inserting the pooler's own replies where they belong, dropping replies to injected messages,
/// and releasing the server connection when the transaction is over.
import Config
import NIOCore
import PostgresWire

extension ClientConnection {
    func serverRead(_ incoming: ByteBuffer, from server: ServerConnection) {
        guard server === self.server else { return }
        var buffer = server.scanner.merge(incoming)
        let end = buffer.writerIndex
        var runStart = buffer.readerIndex
        var index = runStart
        var release = false
        var settingsReplayDone = false
        var resumesClient = false  // (a restore after a reset was decided: the client's held messages go on)

        /// Sends the bytes between `runStart` and `upTo` to the client.
        func flushRun(upTo: Int) {
            if upTo > runStart { write(buffer.getSlice(at: runStart, length: upTo - runStart)!) }
            runStart = upTo
        }
        /// The pooler's own replies that are due, after everything relayed up to `index`; never inside a server
        /// message that reached the client in part (they wait for its last byte).
        func writeDueReplies() {
            guard !server.scanner.isMidFrame else { return }
            while let reply = server.tracker.dueSynthetic(status: server.status) {
                flushRun(upTo: index)
                write(reply)
            }
        }

        while index < end {
            if server.scanner.isMidFrame {
                index += server.scanner.consumeSkip(available: end - index)
                writeDueReplies()  // (those that came due with that frame's start)
                continue
            }
            guard let header = FrameHeader.peek(buffer, at: index) else { break }
            guard header.length >= 4 else {
                protocolErrorFromServer(server, "invalid message length \(header.length)")
                return
            }
            let whole = end - index >= header.frameSize
            // (A statement Describe's answer is read whole too: it is the statement's result shape.)
            let describedStatement = header.id == BackendID.rowDescription || header.id == BackendID.noData
                ? server.tracker.headDescribedStatement : nil
            if !whole && (Self.isReadWhole(header.id) || server.tracker.nextReplyIsDropped || describedStatement != nil) {
                break  // wait for the rest of a frame that must be read or dropped whole
            }
            if let describedStatement {
                noteResultShape(of: describedStatement.statement, describedFor: describedStatement.client, header,
                                in: buffer, at: index, on: server)
            }
            var heldForRetry = false
            let failedStatement = header.id == BackendID.errorResponse ? server.tracker.headStatement : nil
            if let failedStatement, whole, server.statements.contains(failedStatement),
               (try? ErrorFields.decode(buffer.getSlice(at: index + FrameHeader.size,
                                                        length: header.payloadSize)!))?.sqlState == "26000" {
                // The server lost a statement the pooler cached for it (a DEALLOCATE ALL run where the pooler
                // could not see it, e.g. inside a function): this request fails, the next ones prepare again.
                server.lostCachedStatements()
            }
            if header.id == BackendID.errorResponse,
               let statement = server.tracker.headStatement ?? server.tracker.headDescribedStatement?.statement,
               Self.isStalePlanError(buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!) {
                let error = buffer.getSlice(at: index, length: header.frameSize)!
                heldForRetry = stalePlan(statement, error: error, on: server)
            }
            var disposition = server.tracker.received(header.id)
            if heldForRetry { disposition = .drop }
            if planRetry != nil, disposition == .forward, Self.answersARequest(header.id) { planRetry?.answered = true }
            switch header.id {
            case BackendID.copyInResponse, BackendID.copyOutResponse, BackendID.copyBothResponse:
                server.inCopy = true
            case BackendID.commandComplete:
                server.inCopy = false
                // (the pooler's own parameter replay leaves nothing to reset)
                if disposition == .forward,
                   server.noteCommandTag(buffer, at: index + FrameHeader.size, length: header.payloadSize) {
                    serverDroppedStatements(server)
                }
            case BackendID.errorResponse:
                server.inCopy = false
                if whole, let reason = Self.serverEndingReason(buffer.getSlice(at: index + FrameHeader.size,
                                                                                length: header.payloadSize)!) {
                    // The server is ending this connection (pg_terminate_backend, a shutdown, its own timeouts): the
                    // client hears of it as the loss of its server connection (08006, SPEC 1d) with the server's
                    // words when the connection closes, not as a FATAL of its own session.
                    server.fatalReason = reason
                    disposition = .drop
                }
                if awaitingSettingsReplay, disposition == .drop, whole {
                    noteInjectedError(buffer.getSlice(at: index, length: header.frameSize)!)
                }
                if disposition == .forward {
                    stats.errors.add()
                    server.stats.errors.add()
                    if inference != nil { inference?.failed = true }
                }
            case BackendID.parameterStatus:
                noteParameterStatus(buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!,
                                    from: server, reportedToClient: disposition == .forward)
            case BackendID.readyForQuery:
                let byte = buffer.getInteger(at: index + FrameHeader.size, as: UInt8.self)
                server.status = byte.flatMap(TransactionStatus.init) ?? .idle
                if server.tracker.pendingSyncPoints == 0 { server.expectedStatementDrops = 0 }  // (refused ones)
                if disposition == .forward {
                    countRequest(on: server)
                } else if server.tracker.pendingSyncPoints == 0, !server.awaitsFlushedReplies {
                    server.requestStart = nil  // the pooler's own query (a restore) ended the wait: none goes on
                }
                if awaitingSettingsReplay, disposition == .drop { noteInjectedQueryAnswered() }
                if planRetry != nil {
                    let outcome = finishRecordedBatch(on: server)
                    if outcome.retried {
                        disposition = .drop
                    } else if let error = outcome.heldError {
                        flushRun(upTo: index)
                        write(error)
                    }
                }
                if disposition == .forward, restoreAfterUnit != nil, !server.tracker.awaitsClientSyncPoint {
                    // The unit with the client's reset is answered (a retried one: its retry's answer): the login
                    // values are set again unless it failed (the reset did not run, or was rolled back with it);
                    // then the client goes on.
                    if !server.tracker.lastUnitFailed, let restore = restoreAfterUnit { injectRestore(restore, on: server) }
                    restoreAfterUnit = nil
                    resumesClient = true
                }
                if disposition == .forward, deferredBegin != nil, whole {
                    // A unit that only prepared a statement (the BEGIN goes with its Bind): the client is still in the
                    // transaction it opened, which the unit's failure fails (as the pooler's own errors do).
                    if server.tracker.lastUnitFailed { failDeferredTransaction() }
                    buffer.setInteger((deferredTransactionFailed ? TransactionStatus.failed : .inTransaction).rawValue,
                                      at: index + FrameHeader.size)
                }
            default:
                break
            }
            if header.id == BackendID.errorResponse, disposition == .forward, whole,
               let replacement = clientVersion(ofError: buffer.getSlice(at: index + FrameHeader.size,
                                                                        length: header.payloadSize)!,
                                               failedStatement: failedStatement) {
                flushRun(upTo: index)
                write(replacement)
                disposition = .drop
            }
            if disposition == .drop {
                flushRun(upTo: index)
                index += header.frameSize
                runStart = index
            } else if whole {
                index += header.frameSize
            } else {
                server.scanner.startSkip(header.frameSize - (end - index))
                index = end
            }
            if header.id == BackendID.errorResponse {
                forgetFailedStatements(on: server)
                // The server skips only to the pooler's own Sync (automatic sharding ended the unit early): the
                // client's messages up to its Sync are skipped here, as PostgreSQL would skip them.
                if server.tracker.takeErrorBeforeInjectedSync() {
                    discardUntilSync = true
                    if deferredBegin != nil { failDeferredTransaction() }  // (a prepare that failed inside it)
                }
            }
            if header.id == BackendID.parseComplete { noteSucceededStatements(on: server) }
            writeDueReplies()
            if header.id == BackendID.readyForQuery, server.tracker.pendingSyncPoints == 0 {
                if awaitingSettingsReplay {
                    settingsReplayDone = true  // the client's messages were held back: nothing else is owed
                    break
                }
                if shouldRelease(server) {
                    release = true
                    break
                }
            }
        }
        server.endFlushedWaitIfAnswered()
        flushRun(upTo: index)
        buffer.moveReaderIndex(to: index)
        if settingsReplayDone {
            server.scanner.keep(buffer)
            settingsReplayAnswered(by: server)
            return
        }
        if release {
            // After the final ReadyForQuery: whole notices go with this transaction. Anything else (a FATAL as the
            // server shuts down, a frame cut by the read) reaches no client, and the connection no pool: a partial
            // frame written here would be completed by the next transaction's bytes in the client's stream.
            if buffer.readableBytes > 0 {  // (rarely: the check stays off the per-transaction path)
                let notices = ServerConnection.wholeNoticesLength(buffer)
                if notices > 0 { write(buffer.getSlice(at: buffer.readerIndex, length: notices)!) }
                if notices < buffer.readableBytes { server.isBroken = true }
            }
            server.scanner.reset()
            if server.isBroken || !releasesAfterTransaction
                || server.isDirty && pool?.cleanupServerConnections != false {
                // Session state must not reach the next client: reset it first (draining, pinned, SET, PREPARE);
                // a broken connection is discarded.
                self.server = nil
                returnServer(server, clientLeft: !releasesAfterTransaction)
            } else {
                releaseServer()
            }
            if closeWhenIdle {
                fatal(.adminShutdown, "terminating connection due to administrator command")
                return
            }
            flushIfNeeded()
            drive()
            flushIfNeeded()  // what drive() answered locally (e.g. a Parse the pooler knows) must not wait
            return
        }
        server.scanner.keep(buffer)
        if awaitingResultShape, !server.tracker.awaitsInjectedDescribe {
            awaitingResultShape = false  // (the held Bind goes on: its statement's copy is described)
            resumesClient = true
        }
        if resumesClient {
            drive()
            flushIfNeeded()
        } else if awaitingStatementOutcome, !server.tracker.hasUnresolvedStatementsBeforeSync {
            awaitingStatementOutcome = false
            drive()
            flushIfNeeded()
        } else if let held = inbox, held.readableBytes > 0,
                  !server.tracker.awaitsClientSyncPoint || server.tracker.copyIn {
            // The relay held these bytes until this answer (read/write splitting: the transaction might have
            // ended); it did not end here, so they follow on this server.
            drive()
            flushIfNeeded()
        }
        if server.tracker.pendingSyncPoints == 0, server.status != .idle {
            startIdleTransactionTimer()
        }
    }

    /// A ReadyForQuery reached the client: one query (request) done, and a transaction if the server is idle.
    private func countRequest(on server: ServerConnection) {
        let now = NIODeadline.now()
        server.readyAt = now.uptimeNanoseconds
        stats.queries.add()
        server.stats.queries.add()
        if let start = server.requestStart {
            let elapsed = (now - start).nanoseconds
            server.stats.queryTime.add(Int(elapsed / 1000))
            pool?.queryTimer?.record(nanoseconds: elapsed)
            server.requestStart = server.tracker.pendingSyncPoints > 0 ? now : nil
        }
        if server.status == .idle {
            stats.transactions.add()
            server.stats.transactions.add()
            if let start = server.transactionStart {
                server.stats.transactionTime.add(Int((now - start).nanoseconds / 1000))
                server.transactionStart = nil
            }
        }
    }

    func serverReadComplete(from server: ServerConnection) {
        flushIfNeeded()
    }

    /// The ErrorResponse the client gets instead of the server's (payload `error`), or nil to pass that on: a
    /// cancel the pooler sent for the model's statement_timeout is named as such, not "due to user request"; the
    /// pooler's statement names (PGCAT_3) become the client's own.
    private func clientVersion(ofError error: ByteBuffer, failedStatement: String?) -> ByteBuffer? {
        if inference?.cancelSent == true, (try? ErrorFields.decode(error))?.sqlState == "57014" {
            var replacement = allocate(96)
            MessageEncoder.errorResponse(severity: .error, state: .queryCanceled,
                                         message: "canceling statement due to statement timeout", into: &replacement)
            return replacement
        }
        guard let failedStatement else { return nil }
        return renamingStatement(in: error, serverName: failedStatement)
    }

    /// The ErrorResponse with the client's name for `serverName` where its text quotes the pooler's, or nil when it
    /// does not (or the client has no name for it).
    private func renamingStatement(in payload: ByteBuffer, serverName: String) -> ByteBuffer? {
        let quoted = "\"\(serverName)\""
        guard payload.readableBytesView.count >= quoted.utf8.count else { return nil }
        // (Two client names for one text share the server statement: either names the same definition.)
        guard let clientName = statements.first(where: { $0.value.serverName == serverName })?.key,
              var error = try? ErrorFields.decode(payload),
              error.fields.values.contains(where: { $0.contains(quoted) }) else { return nil }
        for (code, value) in error.fields where value.contains(quoted) {
            error.fields[code] = value.replacingOccurrences(of: quoted, with: "\"\(clientName)\"")
        }
        var out = allocate(payload.readableBytes + 32)
        MessageEncoder.errorResponse(error, into: &out)
        return out
    }

    /// A server frame that is part of an answer (not asynchronous, not the closing ReadyForQuery).
    static func answersARequest(_ id: UInt8) -> Bool {
        switch id {
        case BackendID.noticeResponse, BackendID.parameterStatus, BackendID.notificationResponse,
             BackendID.readyForQuery:
            return false
        default:
            return true
        }
    }

    /// For an ErrorResponse of severity FATAL or PANIC (the server closes the connection after it): its message
    /// and SQLSTATE; nil for any other error.
    static func serverEndingReason(_ payload: ByteBuffer) -> String? {
        guard let fields = try? ErrorFields.decode(payload),
              let severity = fields.fields[UInt8(ascii: "V")] ?? fields.severity,
              severity == "FATAL" || severity == "PANIC" else { return nil }
        return "the server ended it: \(fields.message ?? "no message") (\(fields.sqlState ?? "no SQLSTATE"))"
    }

    /// Frames the relay reads whole: ReadyForQuery (status), ParameterStatus (values), CommandComplete (tags that
    /// leave session state), ErrorResponse (stale plans), and the tiny replies the pooler may drop (ParseComplete,
    /// CloseComplete).
    @inline(__always)
    static func isReadWhole(_ id: UInt8) -> Bool {
        switch id {
        case BackendID.readyForQuery, BackendID.parameterStatus, BackendID.parseComplete, BackendID.closeComplete,
             BackendID.commandComplete, BackendID.errorResponse:
            return true
        default:
            return false
        }
    }

    /// Transaction over: give the connection back (transaction mode), or close this client (draining).
    private func shouldRelease(_ server: ServerConnection) -> Bool {
        guard server.isCleanlyIdle, !scanner.isMidFrame else { return false }
        return releasesAfterTransaction || closeWhenIdle
    }

    private func noteParameterStatus(_ payload: ByteBuffer, from server: ServerConnection, reportedToClient: Bool) {
        guard let status = try? ParameterStatus.decode(payload) else { return }
        server.parameters[status.name] = status.value
        if reportedToClient, Self.trackedParameterNames.contains(status.name) {
            trackedParameters[status.name] = status.value
            if status.name == "application_name" {
                applicationName = status.value
                reportedApplicationName.withLockedValue { $0 = status.value }
            }
        }
    }

    private func protocolErrorFromServer(_ server: ServerConnection, _ reason: String) {
        logger.error("protocol error from server", metadata: ["error": "\(reason)"])
        serverClosed(server, reason: "protocol error from server: \(reason)")
        pool?.discard(server)
    }
}
