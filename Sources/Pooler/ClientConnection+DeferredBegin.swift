/// `automatic_sharding_key` and a transaction opened by a Query of its own (`BEGIN`, as psycopg sends it outside
/// autocommit and asyncpg's `transaction()`): the BEGIN names no key, so leasing for it would tie the transaction to
/// `default_shard` and every keyed statement after it would go there. Instead the pooler answers the BEGIN itself
/// (CommandComplete, ReadyForQuery `T`), and the transaction's first request is routed by its own key; the BEGIN is
/// sent ahead of it on the server it is leased, and that request waits for the BEGIN's answer (a BEGIN the server
/// refuses fails the request instead of letting it run outside a transaction). A BEGIN through the extended protocol
/// in a unit of its own is deferred the same way (ClientConnection+PoolerCommandStatements). An error the pooler
/// raises while the BEGIN waits fails the transaction, which no server holds: the pooler answers it as Postgres
/// answers a failed transaction block.
import NIOCore
import PostgresWire
import QueryParser

/// A deferred BEGIN sent at a lease, while its answer is awaited: the pooler's queries ahead of it still unanswered
/// (its parameter replay), whether the replay's errors concern the request (it applies login settings, else it
/// passes unseen as without a BEGIN), and the BEGIN's own error.
struct SentBegin {
    var queriesBefore: Int
    var replayErrorsCount: Bool
    var error: ByteBuffer?
}

extension ClientConnection {
    /// A Query `payload` that only opens a transaction, from a client whose transactions are routed by their key.
    /// `evenIfPending`: also while a BEGIN waits (a prepared BEGIN bound again: answered as Postgres does).
    func defersBegin(_ payload: ByteBuffer, evenIfPending: Bool = false) -> Bool {
        // A first look at two bytes before anything else (every Query of every client passes here): BEGIN, START,
        // or white space first.
        guard payload.readableBytes < 1024, let first = payload.getInteger(at: payload.readerIndex, as: UInt8.self),
              let second = payload.getInteger(at: payload.readerIndex + 1, as: UInt8.self) else { return false }
        switch first | 0x20 {
        case UInt8(ascii: "b"): break
        case UInt8(ascii: "s"): guard second | 0x20 == UInt8(ascii: "t") else { return false }
        default: guard first == 0x20 || first == 0x0A || first == 0x09 || first == 0x0D else { return false }
        }
        guard deferredBegin == nil || evenIfPending, poolMode == .transaction, shardsEachTransaction,
              var text = payload.getString(at: payload.readerIndex, length: payload.readableBytes),
              text.hasSuffix("\0") else { return false }
        text.removeLast()
        guard case .success(let facts) = runtime.queryParser.facts(text), facts.statementKinds == ["TransactionStmt"],
              case .begin? = facts.transaction else { return false }
        return true
    }

    /// Answers the BEGIN Query `frame` as the server would and keeps it for the transaction's first lease.
    func deferBegin(_ frame: ByteBuffer, payload: ByteBuffer) {
        var reply = allocate(32)
        deferBegin(query: payload, frame: frame, into: &reply)
        sendReady(into: &reply)  // `T`: a deferred BEGIN is pending
        write(reply)
    }

    /// Keeps the BEGIN Query payload `query` (its whole `frame` when the caller has it) for the transaction's first
    /// lease and writes its CommandComplete. A second BEGIN while one waits is only answered (Postgres warns).
    func deferBegin(query: ByteBuffer, frame: ByteBuffer? = nil, into reply: inout ByteBuffer) {
        if deferredBegin == nil {
            deferredBegin = frame ?? {
                var built = allocate(query.readableBytes + 8)
                MessageEncoder.frame(FrontendID.query, into: &built) { $0.writeImmutableBuffer(query) }
                return built
            }()
        }
        let first = StatementCommand.words(of: query.getString(at: query.readerIndex,
                                                               length: min(query.readableBytes, 32)) ?? "").first
        MessageEncoder.commandComplete(first?.lowercased() == "start" ? "START TRANSACTION" : "BEGIN", into: &reply)
    }

    /// An error the pooler's own queries sent at a lease got while the client waits for them: the BEGIN's, or the
    /// login settings' (`settingsReplayError`), or nothing to report (a replay of reported parameters).
    func noteInjectedError(_ error: ByteBuffer) {
        if let begin = sentBegin, begin.queriesBefore == 0 {
            if begin.error == nil { sentBegin?.error = error }
        } else if sentBegin?.replayErrorsCount ?? true {
            if settingsReplayError == nil { settingsReplayError = error }
        }
    }

    /// A ReadyForQuery of the pooler's own queries sent at a lease.
    func noteInjectedQueryAnswered() {
        if let queries = sentBegin?.queriesBefore, queries > 0 { sentBegin?.queriesBefore = queries - 1 }
    }

    /// While a BEGIN waits: a Query that only ends the transaction (COMMIT, END, ROLLBACK, ABORT) is answered here,
    /// as the transaction did nothing on any server. True when answered.
    func endDeferredTransaction(_ payload: ByteBuffer) -> Bool {
        guard deferredBegin != nil,
              let tag = transactionEndTag(payload.getString(at: payload.readerIndex, length: payload.readableBytes) ?? "")
        else { return false }
        deferredBegin = nil
        var reply = allocate(32)
        MessageEncoder.commandComplete(tag, into: &reply)
        sendReady(into: &reply)  // `I`
        write(reply)
        return true
    }

    /// On the transaction's first lease: the kept BEGIN goes first (after the parameter `replay`, if one was sent),
    /// and the client's messages wait for its answer (with the login settings' replay: `awaitingSettingsReplay`).
    /// The BEGIN's own error fails the request; a replay of reported parameters only is not the request's concern
    /// (its errors pass unseen, as without a deferred BEGIN).
    func sendDeferredBegin(on server: ServerConnection, after replay: ParameterReplay?) {
        guard let begin = deferredBegin else { return }
        deferredBegin = nil
        server.tracker.append(.injected(.query))
        server.send(begin)
        sentBegin = SentBegin(queriesBefore: replay == nil ? 0 : 1, replayErrorsCount: replay?.appliesSettings ?? false)
        if !awaitingSettingsReplay {
            awaitingSettingsReplay = true
            let now = NIODeadline.now()
            server.requestStart = now
            server.transactionStart = now
        }
    }

    /// The transaction whose BEGIN waits failed (an error the pooler raised): no server holds it, so the pooler
    /// answers what follows as Postgres answers a failed transaction block.
    func failDeferredTransaction() {
        deferredBegin = nil
        deferredTransactionFailed = true
    }

    /// In a failed transaction block no server holds: a ROLLBACK, COMMIT, END or ABORT (a Query, or Parse, Bind,
    /// Execute of one up to a Sync) ends it (`ROLLBACK`, ReadyForQuery `I`); anything else gets 25P02. nil: leave
    /// the message to the usual dispatch (a Sync alone, Terminate); false: wait for more bytes.
    func answerInFailedTransaction(_ buffer: inout ByteBuffer) -> Bool? {
        guard let first = FrameHeader.peek(buffer, at: buffer.readerIndex) else { return false }
        switch first.id {
        case FrontendID.sync, FrontendID.terminate, FrontendID.flush:
            return nil
        case FrontendID.query:
            guard buffer.readableBytes >= first.frameSize else { return false }
            let payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: first.payloadSize)!
            buffer.moveReaderIndex(forwardBy: first.frameSize)
            var reply = allocate(128)
            if endsTransaction(payload.getString(at: payload.readerIndex, length: payload.readableBytes) ?? "") {
                deferredTransactionFailed = false
                MessageEncoder.commandComplete("ROLLBACK", into: &reply)
            } else {
                MessageEncoder.errorResponse(severity: .error, state: Self.inFailedTransaction,
                                             message: Self.inFailedTransactionMessage, into: &reply)
            }
            sendReady(into: &reply)
            write(reply)
            return true
        default:
            break
        }
        // An extended unit: its frames up to the Sync.
        var frames: [(id: UInt8, payload: ByteBuffer)] = []
        var index = buffer.readerIndex
        var ends = true
        var parsed: [String: String] = [:]
        while true {
            guard let header = FrameHeader.peek(buffer, at: index) else { return false }
            guard header.length >= 4, header.frameSize <= maxMessageSize else { return nil }  // (the relay refuses it)
            guard buffer.writerIndex - index >= header.frameSize else { return false }
            var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
            index += header.frameSize
            frames.append((header.id, payload))
            switch header.id {
            case FrontendID.parse:
                let name = payload.readNullTerminatedString() ?? ""
                let text = payload.readNullTerminatedString() ?? ""
                parsed[name] = text
                if !endsTransaction(text) { ends = false }
            case FrontendID.bind:
                _ = payload.readNullTerminatedString()
                let name = payload.readNullTerminatedString() ?? ""
                if !endsTransaction(parsed[name] ?? knownText(ofStatement: name) ?? "") { ends = false }
            case FrontendID.describe, FrontendID.execute, FrontendID.close:
                break
            case FrontendID.sync:
                buffer.moveReaderIndex(to: index)
                answerFailedUnit(frames, ends: ends)
                return true
            default:  // a Query, Flush, FunctionCall or Terminate before the Sync
                buffer.moveReaderIndex(to: index - header.frameSize)
                sendError(Self.inFailedTransaction, Self.inFailedTransactionMessage)
                discardUntilSync = true
                return true
            }
        }
    }

    /// Answers a unit in a failed block: the messages of a ROLLBACK (or COMMIT, which rolls back) as Postgres does,
    /// or 25P02 for the first message, the rest skipped up to the Sync.
    private func answerFailedUnit(_ frames: [(id: UInt8, payload: ByteBuffer)], ends: Bool) {
        var reply = allocate(128)
        if ends {
            for (id, frame) in frames {
                switch id {
                case FrontendID.parse: Self.empty(BackendID.parseComplete, into: &reply)
                case FrontendID.bind: Self.empty(BackendID.bindComplete, into: &reply)
                case FrontendID.close: Self.empty(BackendID.closeComplete, into: &reply)
                case FrontendID.describe:
                    if frame.getInteger(at: frame.readerIndex, as: UInt8.self) == UInt8(ascii: "S") {
                        MessageEncoder.frame(BackendID.parameterDescription, into: &reply) { $0.writeInteger(Int16(0)) }
                    }
                    Self.empty(BackendID.noData, into: &reply)
                case FrontendID.execute:
                    deferredTransactionFailed = false
                    MessageEncoder.commandComplete("ROLLBACK", into: &reply)
                default: break
                }
            }
            // (A Parse of a named ROLLBACK is not kept: a later Bind of it reaches a server, which says 26000.)
        } else {
            MessageEncoder.errorResponse(severity: .error, state: Self.inFailedTransaction,
                                         message: Self.inFailedTransactionMessage, into: &reply)
        }
        sendReady(into: &reply)
        write(reply)
    }

    /// COMMIT, END, ROLLBACK or ABORT (not AND CHAIN, not of a prepared transaction, not to a savepoint).
    private func endsTransaction(_ text: String) -> Bool { transactionEndTag(text) != nil }

    /// `COMMIT` or `ROLLBACK` for a text that only ends a transaction (COMMIT, END, ROLLBACK, ABORT; not AND CHAIN,
    /// which opens another, nor COMMIT PREPARED or ROLLBACK TO a savepoint); a trailing NUL is allowed.
    private func transactionEndTag(_ text: String) -> String? {
        var text = text
        if text.hasSuffix("\0") { text.removeLast() }
        let lowered = text.lowercased()
        guard text.utf8.count < 256, !lowered.contains("chain"), !lowered.contains("prepared"),
              case .success(let facts) = runtime.queryParser.facts(text), facts.statementKinds == ["TransactionStmt"]
        else { return nil }
        switch facts.transaction {
        case .commit?: return "COMMIT"
        case .rollback?: return "ROLLBACK"
        default: return nil
        }
    }

    static let inFailedTransaction = SQLState("25P02")
    static let inFailedTransactionMessage = "current transaction is aborted, commands ignored until end of transaction block"
}
