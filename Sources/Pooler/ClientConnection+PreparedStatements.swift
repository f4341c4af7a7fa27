/// Named prepared statements in transaction mode: a client's statement names are mapped to pool-wide server-side
/// names (`PGCAT_<n>`, one per distinct query text and parameter types); a server connection that lacks a statement
/// gets it re-prepared just before it is used; Close, DEALLOCATE and DISCARD ALL are honoured per client.
/// Replies the pooler gives itself are placed in the server's reply order by the ResponseTracker.
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Whether the frame at `index` (header complete) may name a prepared statement the pooler renames: a named
    /// Parse, a Bind/Describe/Close of a named statement, or a Query that may be DEALLOCATE/DISCARD. Looks at a few
    /// bytes only, without allocating: unnamed statements (most traffic) stream straight through.
    /// `reference`: the frame's `StatementReference` (an undecided one is decided when the frame is whole).
    static func mayNeedRewrite(_ header: FrameHeader, _ reference: StatementReference, in buffer: ByteBuffer,
                               at index: Int) -> Bool {
        switch reference {
        case .named, .undecided:
            return true
        case .unnamed:
            return false
        case .none:
            return header.id == FrontendID.query && header.payloadSize < StatementCommand.maxTrackedLength
                && StatementCommand.mightMatch(FramePrefix(header, in: buffer, at: index).slice)
        }
    }

    /// Handles one whole frame if it concerns a named statement; `before` forwards everything the client sent
    /// earlier, so order is kept. Returns false to let the frame pass through unchanged.
    func rewrite(_ id: UInt8, _ payload: ByteBuffer, on server: ServerConnection, before: () -> Void) -> Bool {
        var payload = payload
        switch id {
        case FrontendID.parse:
            guard let name = payload.readNullTerminatedString(), !name.isEmpty else { return false }
            before()
            planRetry = nil
            parse(name: name, definition: payload, on: server)
            return true
        case FrontendID.bind:
            guard let portal = payload.readNullTerminatedString(), let name = payload.readNullTerminatedString(),
                  !name.isEmpty else { return false }
            before()
            let startsBatch = server.tracker.pendingCount == 0
            let verified = verifiedCopy, counted = heldForShape
            verifiedCopy = nil
            heldForShape = false
            guard let statement = prepared(name, on: server, countsUse: !counted, trusting: verified) else {
                planRetry = nil
                return true
            }
            if let known = statement.resultShape, let actual = server.statements.shape(of: statement.serverName),
               known != actual {
                // Prepared afresh (`holdsBindForResultShape`) where the schema has changed since the client
                // described it: PostgreSQL refuses to run a statement whose result changed shape, and clients decode
                // rows by the shape they know. (The new shape was reported pool-wide when it was described.)
                failExtended(Self.resultTypeChanged, on: server)
                return true
            }
            if statement.setsConfig { server.dirtySettings = true }  // (its settings must not reach the next client)
            var bind = allocate(payload.readableBytes + portal.utf8.count + statement.serverName.utf8.count + 8)
            MessageEncoder.frame(FrontendID.bind, into: &bind) {
                $0.writeNullTerminatedString(portal)
                $0.writeNullTerminatedString(statement.serverName)
                $0.writeImmutableBuffer(payload)
            }
            server.tracker.append(.bind(statement: statement.serverName))
            recordForRetry(bind, using: statement, named: name, startsBatch: startsBatch)
            server.send(bind)
            return true
        case FrontendID.describe, FrontendID.close:
            guard let name = payload.readStatementName(), !name.isEmpty else { return false }
            before()
            if id == FrontendID.close {
                // The server keeps the statement for other clients; this client just forgets its name.
                planRetry = nil
                if let closed = statements.removeValue(forKey: name) {
                    server.tracker.append(.syntheticStatement(Self.closeComplete,
                                                              undo: .restore(client: name, statement: closed)))
                } else {
                    server.tracker.append(.synthetic(Self.closeComplete))  // closing an unknown name is not an error
                }
                return true
            }
            let startsBatch = server.tracker.pendingCount == 0
            guard let statement = prepared(name, on: server, describing: true) else { planRetry = nil; return true }
            if statement.setsConfig { server.dirtySettings = true }  // (its settings must not reach the next client)
            var describe = allocate(statement.serverName.utf8.count + 8)
            MessageEncoder.frame(FrontendID.describe, into: &describe) {
                $0.writeInteger(UInt8(ascii: "S"))
                $0.writeNullTerminatedString(statement.serverName)
            }
            server.tracker.append(.describeStatement(statement: statement.serverName, client: name))
            recordForRetry(describe, using: statement, named: name, startsBatch: startsBatch)
            server.send(describe)
            return true
        case FrontendID.query:
            planRetry = nil
            return sqlLevelStatementCommand(payload, on: server, before: before)
        default:
            return false
        }
    }

    /// A named Parse: reuse the server's copy when it has one (answering ParseComplete itself), else prepare it
    /// under its server-side name.
    private func parse(name: String, definition: ByteBuffer, on server: ServerConnection) {
        guard statements[name] == nil else {
            failExtended(SQLState("42P05"), "prepared statement \"\(name)\" already exists", on: server)
            return
        }
        guard let pool else { return }
        let definition = ByteBuffer(ByteBufferView(definition.readableBytesView))
        let serverName = pool.statementNames.name(for: definition)
        statements[name] = ClientStatement(serverName: serverName, definition: definition,
                                           setsConfig: SessionPin.inspect(definition).setsConfig)
        if serverHolds(serverName, server) {
            server.statements.touch(serverName)
            server.stats.prepareHits.add()
            statements[name]?.awaitsFreshCopy = true
            server.tracker.append(.syntheticStatement(Self.parseComplete, undo: .forget(client: name)))
            return
        }
        server.stats.prepareMisses.add()
        closeIfStale(serverName, on: server)
        evict(server.statements.insert(serverName, staleReports: pool.statementNames.staleReports), on: server)
        server.tracker.append(.parse(statement: serverName, client: name))
        server.send(parseMessage(serverName, definition))
    }

    /// The client's statement `name`, prepared on `server` if it lacks it; nil (after a 26000 error) if unknown.
    /// `countsUse`: false when the use was counted already (as a miss, by the hold that prepared it afresh).
    /// `trusting`: the server-side name whose copy the Bind's hold check found of the client's shape: used as it
    /// is, even if a stale report came meanwhile (prepared again here, undescribed, its rows would go unchecked;
    /// PostgreSQL itself refuses the Bind if that copy went stale).
    private func prepared(_ name: String, on server: ServerConnection, countsUse: Bool = true,
                          trusting: String? = nil, describing: Bool = false) -> ClientStatement? {
        guard let statement = statements[name] else {
            failExtended(.invalidSQLStatementName, "prepared statement \"\(name)\" does not exist", on: server)
            return nil
        }
        if statement.awaitsFreshCopy { takeFreshCopy(name, statement, on: server, describing: describing) }
        if trusting == statement.serverName && server.statements.contains(statement.serverName)
            || serverHolds(statement.serverName, server) {
            server.statements.touch(statement.serverName)
            if countsUse { server.stats.prepareHits.add() }
        } else {
            if countsUse { server.stats.prepareMisses.add() }
            prepareAgain(statement, on: server)
        }
        return statement
    }

    /// The first use of a statement whose Parse the pooler answered itself. If it describes the statement (asyncpg
    /// and pgjdbc do so right after their Parse, and decode its rows by that description), the server's copy, if
    /// any, is dropped (closed before it is prepared again), so that the Describe meets a copy planned now: an
    /// older one would fail it with 0A000 after a schema change, an error asyncpg does not retry in its prepare. A
    /// first Bind uses the shared copy (PostgreSQL's own check, or the pooler's shape check, guards it).
    private func takeFreshCopy(_ name: String, _ statement: ClientStatement, on server: ServerConnection,
                               describing: Bool) {
        statements[name]?.awaitsFreshCopy = false
        guard describing, server.statements.contains(statement.serverName) else { return }
        server.statements.remove(statement.serverName)
        server.staleStatements.insert(statement.serverName)
    }

    /// Whether `server` holds a usable copy of `serverName`. A copy prepared (or last checked) before a stale report
    /// of that statement (a server's 0A000 in `stalePlan`, or a Describe showing a new shape in `noteResultShape`)
    /// was planned against the same old schema: it is taken as stale too, to be closed and prepared again, rather
    /// than failing a client's Describe or Bind (asyncpg prepares again on every connection of its pool after such
    /// an error).
    func serverHolds(_ serverName: String, _ server: ServerConnection) -> Bool {
        guard let checkedAt = server.statements.checkedAt(serverName) else { return false }
        guard let names = pool?.statementNames else { return true }
        let reports = names.staleReports
        guard checkedAt < reports else { return true }  // (no report since: the common case, no lock)
        guard names.reportedStale(serverName, after: checkedAt) else {
            server.statements.markChecked(serverName, staleReports: reports)
            return true
        }
        server.statements.remove(serverName)
        server.staleStatements.insert(serverName)
        return false
    }

    /// Injects a Parse of a statement the client has but `server` lacks; its reply is not forwarded.
    func prepareAgain(_ statement: ClientStatement, on server: ServerConnection) {
        closeIfStale(statement.serverName, on: server)
        evict(server.statements.insert(statement.serverName, staleReports: pool?.statementNames.staleReports ?? 0),
              on: server)
        server.tracker.append(.injected(.parse(statement: statement.serverName)))
        server.send(parseMessage(statement.serverName, statement.definition))
    }

    private func evict(_ evicted: String?, on server: ServerConnection) {
        server.stats.prepareCacheSize.store(server.statements.count)
        guard let evicted else { return }
        server.stats.prepareEvictions.add()
        injectClose(evicted, on: server)
    }

    /// The server still holds an old copy of the statement under this name: close it before preparing it again.
    private func closeIfStale(_ serverName: String, on server: ServerConnection) {
        if server.staleStatements.remove(serverName) != nil { injectClose(serverName, on: server) }
    }

    func injectClose(_ serverName: String, on server: ServerConnection) {
        var close = allocate(serverName.utf8.count + 8)
        MessageEncoder.frame(FrontendID.close, into: &close) {
            $0.writeInteger(UInt8(ascii: "S"))
            $0.writeNullTerminatedString(serverName)
        }
        server.tracker.append(.injected(.close(statement: serverName)))
        server.send(close)
    }

    private func parseMessage(_ serverName: String, _ definition: ByteBuffer) -> ByteBuffer {
        var parse = allocate(definition.readableBytes + serverName.utf8.count + 8)
        MessageEncoder.frame(FrontendID.parse, into: &parse) {
            $0.writeNullTerminatedString(serverName)
            $0.writeImmutableBuffer(definition)
        }
        return parse
    }

    /// A Bind of a statement the client has described, about to run on a server connection whose copy's result
    /// shape is not the one the client knows: the copy was prepared again, or by a client that never described it,
    /// or it was described with another shape (it may be older than the client's statement). The pooler prepares
    /// the copy afresh (a Parse is planned against the current schema, never failing as a stale copy would) and
    /// describes it, holding the Bind and what follows it until the answer; the Bind's rewrite then compares the
    /// shapes (`verifiedCopy`). Statements without rows are not held: their result cannot change shape. Returns
    /// whether the Bind is held.
    func holdsBindForResultShape(_ payload: ByteBuffer, on server: ServerConnection, before: () -> Void) -> Bool {
        verifiedCopy = nil
        heldForShape = false
        var payload = payload
        guard payload.readNullTerminatedString() != nil, let name = payload.readNullTerminatedString(),
              let statement = statements[name], let known = statement.resultShape, known != .noRows else {
            heldStatement = nil
            return false
        }
        if let held = heldStatement {
            heldStatement = nil
            // Back from this statement's hold: the rewrite compares (a description the pooler could not read
            // leaves no shape, and the Bind goes on unchecked rather than being held again).
            if held == statement.serverName {
                heldForShape = true
                if server.statements.shape(of: statement.serverName) != nil { verifiedCopy = statement.serverName }
                return false
            }
        }
        if statement.awaitsFreshCopy { takeFreshCopy(name, statement, on: server, describing: false) }
        let held = serverHolds(statement.serverName, server)
        let recorded = held ? server.statements.shape(of: statement.serverName) : nil
        if recorded == known {
            verifiedCopy = statement.serverName
            return false
        }
        before()
        if held {  // closed and prepared afresh
            server.statements.remove(statement.serverName)
            server.staleStatements.insert(statement.serverName)
        }
        server.stats.prepareMisses.add()
        prepareAgain(statement, on: server)
        var describe = allocate(statement.serverName.utf8.count + 16)
        MessageEncoder.frame(FrontendID.describe, into: &describe) {
            $0.writeInteger(UInt8(ascii: "S"))
            $0.writeNullTerminatedString(statement.serverName)
        }
        describe.writeMultipleIntegers(FrontendID.flush, Int32(4))  // (the answer is needed before any Sync)
        server.tracker.append(.injected(.describe(statement: statement.serverName)))
        server.awaitsFlushedReplies = true  // (query_timeout and statement_timeout count the wait)
        server.send(describe)
        heldStatement = statement.serverName
        awaitingResultShape = true
        return true
    }

    /// A RowDescription or NoData (whole frame at `index`) answers a statement Describe of pooler-named
    /// `statement`: it is the shape of the server's copy, and, for the client's own Describe of its name `client`,
    /// the shape that client knows for that name (not for other names of the same text, which it may have
    /// described before a schema change).
    func noteResultShape(of statement: String, describedFor client: String?, _ header: FrameHeader,
                         in buffer: ByteBuffer, at index: Int, on server: ServerConnection) {
        let shape = header.id == BackendID.noData ? ResultShape.noRows
            : ResultShape(rowDescription: buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!)
        guard let shape else { return }
        server.statements.setShape(shape, of: statement)
        // A copy just described is current; if its shape is not the one last seen for this statement anywhere in
        // the pool, the schema changed: copies elsewhere, planned before, are stale (asyncpg's prepare after its
        // InvalidCachedStatementError would otherwise meet one of them, and fail a second time).
        if let names = pool?.statementNames, names.noteShape(shape, of: statement) {
            server.statements.markChecked(statement, staleReports: names.staleReports)
        }
        guard let client, statements[client]?.serverName == statement else { return }
        statements[client]?.resultShape = shape
        knowsResultShapes = true
    }

    /// PostgreSQL's error for a prepared statement whose result changed shape; clients (asyncpg) recognise it by its
    /// routine name and prepare the statement again.
    static let resultTypeChanged = ErrorFields(fields: [
        UInt8(ascii: "S"): "ERROR", UInt8(ascii: "V"): "ERROR", UInt8(ascii: "C"): SQLState.featureNotSupported.code,
        UInt8(ascii: "M"): "cached plan must not change result type", UInt8(ascii: "R"): "RevalidateCachedQuery",
    ])

    /// An error the pooler raises for an extended-protocol message: it takes that message's place in the reply
    /// order, the server fails the unit too, and the client's messages up to its Sync are dropped, as Postgres
    /// does after an error.
    private func failExtended(_ state: SQLState, _ message: String, on server: ServerConnection) {
        failExtended(ErrorFields(fields: [UInt8(ascii: "S"): "ERROR", UInt8(ascii: "V"): "ERROR",
                                          UInt8(ascii: "C"): state.code, UInt8(ascii: "M"): message]), on: server)
    }

    private func failExtended(_ fields: ErrorFields, on server: ServerConnection) {
        var error = allocate(128)
        MessageEncoder.errorResponse(fields, into: &error)
        server.tracker.append(.synthetic(error))
        // As an error on the server would: the unit's earlier statements are rolled back, and inside a
        // transaction block the transaction is failed (25P02 for what follows, COMMIT rolls back).
        failUnitOnServer(server)
        skipToSync = true
        planRetry = nil
    }

    /// Writes the pooler's own replies that are due now (nothing the server owes comes before them).
    func emitDueReplies(from server: ServerConnection) {
        // Part of a server message has reached the client: the rest comes first (serverRead emits these then).
        guard !server.scanner.isMidFrame else { return }
        var wrote = false
        while let reply = server.tracker.dueSynthetic(status: server.status) {
            write(reply)
            wrote = true
        }
        if wrote { flushIfNeeded() }
    }

    /// Parses the server accepted: their definitions are known to be valid pool-wide.
    func noteSucceededStatements(on server: ServerConnection) {
        for serverName in server.tracker.takeSucceededStatements() { pool?.statementNames.markValid(serverName) }
    }

    /// A named Parse while no server is held, for a statement some server already accepted: it is registered and
    /// answered here, so preparing needs no server connection (pgbench -M prepared blocks a whole thread in
    /// PQprepare; waiting there for a connection that the thread's other clients hold would deadlock).
    func parseWithoutServer(_ payload: ByteBuffer) -> Bool {
        guard rewritesStatements, let pool, payload.getInteger(at: payload.readerIndex, as: UInt8.self) != 0 else {
            return false
        }
        var payload = payload
        guard let name = payload.readNullTerminatedString(), !name.isEmpty, statements[name] == nil,
              let serverName = pool.statementNames.validName(for: payload) else { return false }
        let effects = SessionPin.inspect(payload)
        if pin == nil, let reason = effects.pin { pinSession(reason, on: nil) }
        statements[name] = ClientStatement(serverName: serverName,
                                           definition: ByteBuffer(ByteBufferView(payload.readableBytesView)),
                                           setsConfig: effects.setsConfig)
        statements[name]?.awaitsFreshCopy = true
        noteResetStatement(named: name, definition: payload)
        write(Self.parseComplete)
        return true
    }

    /// After an error: statements whose Parse failed (or was skipped) exist neither on the server nor for the
    /// client, as in Postgres; ones the pooler re-prepared in vain stay the client's (the next use prepares them
    /// again); ones whose eviction was skipped are still on the server and are closed before their next Parse.
    func forgetFailedStatements(on server: ServerConnection) {
        let outcome = server.tracker.takeStatementOutcomes()
        for (serverName, _) in outcome.failed { server.statements.remove(serverName) }
        // Undone newest first, so a name parsed, closed and parsed again in one skipped stretch ends as it began.
        for undo in outcome.undos.reversed() {
            switch undo {
            case .forget(let client):
                statements[client] = nil
            case .forgetIfMapped(let client, let serverName):
                if statements[client]?.serverName == serverName { statements[client] = nil }
            case .restore(let client, let statement):
                if statements[client] == nil { statements[client] = statement }
            }
        }
        for serverName in outcome.lost { server.statements.remove(serverName) }
        for serverName in outcome.unclosed where !server.statements.contains(serverName) {
            server.staleStatements.insert(serverName)
        }
    }

    // MARK: SQL-level commands about prepared statements

    /// SQL-level statements: `PREPARE` is remembered per client and replayed where its `EXECUTE` lands (the
    /// server that ran it may be another client's by then, and is reset with DEALLOCATE ALL before that).
    /// `DEALLOCATE name` of a protocol-level statement is answered here (the server copy is shared); `DEALLOCATE
    /// ALL` and `DISCARD ALL` forget all of this client's statements and are passed on.
    private func sqlLevelStatementCommand(_ payload: ByteBuffer, on server: ServerConnection, before: () -> Void) -> Bool {
        guard let command = StatementCommand(query: payload) else { return false }  // prefiltered by mayNeedRewrite
        switch command {
        case .prepare(let name):
            if var text = payload.getString(at: payload.readerIndex, length: payload.readableBytes) {
                if text.hasSuffix("\0") { text.removeLast() }
                sqlStatements[name] = text
                server.sqlPrepared.insert(name)
            }
            return false
        case .execute(let name):
            guard let text = sqlStatements[name] else { return false }
            if SessionPin.callsSetConfig(text) { server.dirtySettings = true }  // (it runs here, with the EXECUTE)
            guard !server.sqlPrepared.contains(name) else { return false }
            before()
            var prepare = allocate(text.utf8.count + 8)
            MessageEncoder.query(text, into: &prepare)
            server.tracker.append(.injected(.query))
            server.sqlPrepared.insert(name)
            server.dirtyPrepared = true  // its own reply is dropped, so the tag is not seen
            server.send(prepare)
            return false  // the EXECUTE itself follows unchanged
        case .deallocateAll, .discardAll:
            // PostgreSQL refuses DISCARD ALL inside a transaction block, and both in a failed transaction: then it
            // keeps every statement, and so does the pooler. (The status is the last one the server reported.)
            if server.status == .failed || command == .discardAll && server.status == .inTransaction { return false }
            statements.removeAll()
            sqlStatements.removeAll()
            server.forgetAllStatements()
            server.expectedStatementDrops += 1
            return false
        case .deallocate(let name):
            if sqlStatements.removeValue(forKey: name) != nil {
                if server.sqlPrepared.remove(name) != nil { return false }  // the server has it: let it answer
            } else if statements[name] == nil {
                return false  // unknown here: the server answers (26000 if it does not know it either)
            }
            before()
            statements[name] = nil
            var reply = allocate(32)
            MessageEncoder.commandComplete("DEALLOCATE", into: &reply)
            server.tracker.append(.synthetic(reply))
            server.tracker.append(.syntheticReady)
            return true
        }
    }

    /// The server answered DEALLOCATE ALL or DISCARD ALL that the pooler did not recognise in the client's text
    /// (sent through the extended protocol, as pgjdbc and Npgsql do, behind a comment, among other statements, or
    /// run by a function): the server holds none of its prepared statements any more, nor the client any of its
    /// own. The server's are closed before they are prepared again (harmless if gone: one the client pipelined
    /// behind the command may still be there).
    func serverDroppedStatements(_ server: ServerConnection) {
        sessionStatementTexts.removeAll()  // (session mode: the session's statements are gone)
        if server.expectedStatementDrops > 0 {
            server.expectedStatementDrops -= 1  // seen in the text and accounted for when it was sent
            return
        }
        server.lostCachedStatements()
        server.sqlPrepared.removeAll()
        statements.removeAll()
        sqlStatements.removeAll()
        resetStatements.removeAll()
        setStatements.removeAll()
        logger.debug("the server dropped its prepared statements (DEALLOCATE ALL or DISCARD ALL)")
    }

    static let parseComplete: ByteBuffer = {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(BackendID.parseComplete, Int32(4))
        return buffer
    }()

    static let closeComplete: ByteBuffer = {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(BackendID.closeComplete, Int32(4))
        return buffer
    }()
}
