/// PgCat's own SQL (`SET SHARD TO`, `SHOW SHARD`, `SET SERVER ROLE TO`, ...) through the extended protocol, as
/// psycopg sends a text it has run five times (a named Parse, then Bind, Describe, Execute, Sync). PgCat answers
/// only a simple Query, so the text reached Postgres, which refused it (42704 or 42601): a loop of `SET SHARD`
/// broke at its sixth turn. Here a unit whose statements are all such commands is answered by the pooler, message
/// by message, as Postgres answers a prepared statement; a unit that mixes them with other statements is refused
/// with 0A000 (the pooler does not split a unit). Only without a server, as the simple Query form.
import NIOCore
import PostgresWire

extension ClientConnection {
    /// The unit at the front of `buffer` (up to its Sync), when it uses one of PgCat's commands: answered (true),
    /// or more bytes are needed (false). nil when it uses none.
    /// A `DEALLOCATE name` of such a statement (psycopg's cache eviction) is answered too (`deallocatePoolerCommand`).
    func answerPoolerCommandUnit(_ buffer: inout ByteBuffer) -> Bool? {
        guard let first = FrameHeader.peek(buffer, at: buffer.readerIndex) else { return nil }
        // A first look at the first frame: a Parse of a command text, or a message naming a statement or portal
        // that holds one. (A unit whose command comes later is left to the server, which does not know it: 26000.)
        guard buffer.readableBytes >= first.frameSize else { return nil }  // (the relay waits for it whole as well)
        if first.id == FrontendID.parse {
            // (every idle Parse comes here: most texts are told apart by their first byte, read in place)
            guard poolerCommandStatements.isEmpty ? Self.mayStartCommand(buffer, first) : true,
                  let text = parseText(buffer, first, at: buffer.readerIndex),
                  PoolerCommand.mightMatch(text) || defersBegin(text) else {
                if !poolerCommandStatements.isEmpty { forgetPoolerCommandStatement(parsedIn: buffer, first) }
                return nil
            }
        } else if !namesPoolerCommand(buffer, first) {
            return nil
        }
        // The unit's frames, whole, up to its Sync.
        var frames: [(id: UInt8, payload: ByteBuffer)] = []
        var index = buffer.readerIndex
        var usesCommand = false
        var usesBegin = false  // (a deferred BEGIN alone is answered; with other statements, the usual way takes it)
        var others = false
        var portals = poolerCommandPortals
        var statementsHere = poolerCommandStatements
        while true {
            guard let header = FrameHeader.peek(buffer, at: index) else {
                // The end of what came: wait for the rest of a unit that uses a command, else leave it alone.
                return usesCommand || usesBegin ? false : nil
            }
            guard header.length >= 4 else { return nil }  // (malformed: the relay refuses it)
            guard header.frameSize <= maxMessageSize else { return nil }  // (the relay refuses it)
            guard buffer.writerIndex - index >= header.frameSize else {
                return usesCommand || usesBegin || !poolerCommandStatements.isEmpty ? false : nil
            }
            if others && !usesCommand {
                // Another statement and no PgCat command so far: the usual way takes the unit (a BEGIN in it too),
                // without waiting for its Sync.
                keepForgotten(statementsHere)
                return nil
            }
            var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
            frames.append((header.id, payload))
            index += header.frameSize
            switch header.id {
            case FrontendID.parse:
                let name = payload.readNullTerminatedString() ?? ""
                if let text = payload.readNullTerminatedString(), let query = Self.queryPayload(text),
                   let command = emulatedCommand(query), !command.isDeferredBegin || name.isEmpty || rewritesStatements {
                    statementsHere[name] = query
                    if case .deferredBegin = command { usesBegin = true } else { usesCommand = true }
                } else {
                    statementsHere[name] = nil
                    others = true
                }
            case FrontendID.bind:
                let portal = payload.readNullTerminatedString() ?? ""
                if let statement = payload.readNullTerminatedString(), let query = statementsHere[statement],
                   let command = emulatedCommand(query) {
                    portals[portal] = command
                    if case .deferredBegin = command { usesBegin = true } else { usesCommand = true }
                } else {
                    portals[portal] = nil
                    others = true
                }
            case FrontendID.describe, FrontendID.close, FrontendID.execute:
                var kind = UInt8(ascii: "P")
                if header.id != FrontendID.execute { kind = payload.readInteger(as: UInt8.self) ?? 0 }
                let name = payload.readNullTerminatedString() ?? ""
                let command = kind == UInt8(ascii: "S") ? statementsHere[name].flatMap { emulatedCommand($0) } : portals[name]
                if let command {
                    if case .deferredBegin = command { usesBegin = true } else { usesCommand = true }
                } else {
                    others = true
                }
            case FrontendID.flush:
                // The client waits for answers here (asyncpg: Parse, Describe, Flush): those due so far.
                if usesBegin && !usesCommand && !others { usesCommand = true }
                guard usesCommand else {
                    keepForgotten(statementsHere)
                    return nil
                }
                buffer.moveReaderIndex(to: index)
                guard !others else {
                    // (now: the client waits for answers before it sends the Sync)
                    refuseMixedUnit()
                    discardUntilSync = true
                    return true
                }
                answer(frames)
                return true
            case FrontendID.sync:
                if usesBegin && !usesCommand && !others { usesCommand = true }
                guard usesCommand else {
                    keepForgotten(statementsHere)  // (a name parsed again for another text)
                    poolerCommandPortals = [:]
                    return nil
                }
                buffer.moveReaderIndex(to: index)
                if others {
                    refuseMixedUnit()
                    var ready = allocate(8)
                    sendReady(into: &ready)
                    write(ready)
                    return true
                }
                answer(frames)
                return true
            default:  // a Query, FunctionCall or Terminate before a Sync: not a unit of commands
                guard usesCommand else {
                    keepForgotten(statementsHere)
                    return nil
                }
                sendError(.featureNotSupported, "PgCat's commands through the extended protocol need a Sync to end "
                          + "their unit")
                discardUntilSync = true
                return true
            }
        }
    }

    /// Answers the messages of a unit of PgCat commands as Postgres answers a prepared statement's.
    private func answer(_ frames: [(id: UInt8, payload: ByteBuffer)]) {
        var reply = allocate(256)
        var failed = false  // after an error, Postgres skips to the Sync
        for (id, frame) in frames {
            var payload = frame
            if failed && id != FrontendID.sync { continue }
            switch id {
            case FrontendID.parse:
                let name = payload.readNullTerminatedString() ?? ""
                let query = payload.readNullTerminatedString().flatMap(Self.queryPayload)
                poolerCommandStatements[name] = query
                if !name.isEmpty, let query, case .deferredBegin? = emulatedCommand(query) {
                    registerStatement(name, text: frame)  // (any server can prepare it where it is bound later)
                }
                Self.empty(BackendID.parseComplete, into: &reply)
            case FrontendID.bind:
                let portal = payload.readNullTerminatedString() ?? ""
                let statement = payload.readNullTerminatedString() ?? ""
                poolerCommandPortals[portal] = poolerCommandStatements[statement].flatMap { emulatedCommand($0) }
                Self.empty(BackendID.bindComplete, into: &reply)
            case FrontendID.describe:
                let kind = payload.readInteger(as: UInt8.self)
                let name = payload.readNullTerminatedString() ?? ""
                let command: PoolerCommand?
                if kind == UInt8(ascii: "S") {
                    MessageEncoder.frame(BackendID.parameterDescription, into: &reply) { $0.writeInteger(Int16(0)) }
                    command = poolerCommandStatements[name].flatMap { emulatedCommand($0) }
                } else {
                    command = poolerCommandPortals[name]
                }
                if let command, command.returnsRow {
                    // (a SHOW has no side effect: its reply's RowDescription is the description)
                    var result = allocate(128)
                    perform(command, into: &result)
                    if let header = FrameHeader.peek(result, at: result.readerIndex),
                       var description = result.getSlice(at: result.readerIndex, length: header.frameSize) {
                        reply.writeBuffer(&description)
                    }
                } else {
                    Self.empty(BackendID.noData, into: &reply)
                }
            case FrontendID.execute:
                let portal = payload.readNullTerminatedString() ?? ""
                guard let command = poolerCommandPortals[portal] else { continue }
                var result = allocate(128)
                perform(command, into: &result)
                if let header = FrameHeader.peek(result, at: result.readerIndex), header.id == BackendID.rowDescription {
                    result.moveReaderIndex(forwardBy: header.frameSize)  // Execute sends the rows only
                } else if let header = FrameHeader.peek(result, at: result.readerIndex),
                          header.id == BackendID.errorResponse {
                    failed = true  // (perform ended a deferred BEGIN, as the pooler's other errors do)
                }
                reply.writeBuffer(&result)
            case FrontendID.close:
                let kind = payload.readInteger(as: UInt8.self)
                let name = payload.readNullTerminatedString() ?? ""
                if kind == UInt8(ascii: "S") { poolerCommandStatements[name] = nil } else { poolerCommandPortals[name] = nil }
                Self.empty(BackendID.closeComplete, into: &reply)
            case FrontendID.sync:
                poolerCommandPortals = [:]  // (portals last until the transaction ends: here, the Sync)
                sendReady(into: &reply)
            default:
                break
            }
        }
        // Answered up to a Flush after an error: the rest of the unit is skipped up to its Sync, as by Postgres.
        if failed, frames.last?.id != FrontendID.sync { discardUntilSync = true }
        write(reply)
    }

    /// Whether the Bind, Describe, Execute or Close at the front of `buffer` names a statement or portal that holds
    /// one of PgCat's commands.
    private func namesPoolerCommand(_ buffer: ByteBuffer, _ header: FrameHeader) -> Bool {
        guard !poolerCommandStatements.isEmpty,
              var payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: header.payloadSize)
        else { return false }
        switch header.id {
        case FrontendID.bind:
            _ = payload.readNullTerminatedString()
            return payload.readNullTerminatedString().map { poolerCommandStatements[$0] != nil } ?? false
        case FrontendID.describe, FrontendID.close:
            let kind = payload.readInteger(as: UInt8.self)
            guard let name = payload.readNullTerminatedString() else { return false }
            return kind == UInt8(ascii: "S") ? poolerCommandStatements[name] != nil : poolerCommandPortals[name] != nil
        case FrontendID.execute:
            return payload.readNullTerminatedString().map { poolerCommandPortals[$0] != nil } ?? false
        default:
            return false
        }
    }

    /// A Parse of another text under a name that held a command: the name holds that text now.
    private func forgetPoolerCommandStatement(parsedIn buffer: ByteBuffer, _ header: FrameHeader) {
        var payload = buffer.getSlice(at: buffer.readerIndex + FrameHeader.size, length: header.payloadSize)!
        if let name = payload.readNullTerminatedString() { poolerCommandStatements[name] = nil }
    }

    /// After a unit the usual way takes: names it parsed again for other texts are no longer commands (new names are
    /// not added: the server holds them).
    private func keepForgotten(_ statementsHere: [String: ByteBuffer]) {
        if poolerCommandStatements.contains(where: { statementsHere[$0.key] == nil }) {
            poolerCommandStatements = poolerCommandStatements.filter { statementsHere[$0.key] != nil }
        }
        poolerCommandPortals = [:]
    }

    /// A named BEGIN the pooler answered is also the client's statement, as the statement cache keeps it: a later
    /// Bind the usual way (a pipeline, after SET SHARD, inside a pinned session) prepares it on that server.
    private func registerStatement(_ name: String, text frame: ByteBuffer) {
        guard rewritesStatements, statements[name] == nil, let pool else { return }
        var payload = frame
        _ = payload.readNullTerminatedString()  // the name
        let serverName = pool.statementNames.name(for: payload)  // (prepared by the first server it is bound on)
        statements[name] = ClientStatement(serverName: serverName,
                                           definition: ByteBuffer(ByteBufferView(payload.readableBytesView)))
    }

    /// One of PgCat's commands, or a BEGIN the pooler defers, in a Query payload.
    func emulatedCommand(_ query: ByteBuffer) -> PoolerCommand? {
        if let command = PoolerCommand(query: query) { return command }
        return defersBegin(query, evenIfPending: true) ? .deferredBegin(query) : nil
    }

    private func refuseMixedUnit() {
        sendError(.featureNotSupported, "PgCat's commands (SET SHARD, SHOW SHARD, SET SERVER ROLE, ...) cannot share a "
                  + "unit with other statements: send them with a Sync of their own")
    }

    /// Whether the text of the whole Parse frame at the front of `buffer` may start with SET, SHOW, BEGIN or
    /// START (or white space): its first byte, read without a copy. A named Parse passes (its name comes first).
    private static func mayStartCommand(_ buffer: ByteBuffer, _ header: FrameHeader) -> Bool {
        let start = buffer.readerIndex + FrameHeader.size
        guard header.payloadSize >= 4, buffer.getInteger(at: start, as: UInt8.self) == 0,
              let first = buffer.getInteger(at: start + 1, as: UInt8.self),
              let second = buffer.getInteger(at: start + 2, as: UInt8.self),
              let third = buffer.getInteger(at: start + 3, as: UInt8.self) else { return true }
        if first == 0x20 || first == 0x0A || first == 0x09 || first == 0x0D { return true }
        // SET, SHOW, START, BEGIN (not SELECT)
        switch (first | 0x20, second | 0x20, third | 0x20) {
        case (UInt8(ascii: "s"), UInt8(ascii: "e"), UInt8(ascii: "t")), (UInt8(ascii: "s"), UInt8(ascii: "h"), _),
             (UInt8(ascii: "s"), UInt8(ascii: "t"), _), (UInt8(ascii: "b"), UInt8(ascii: "e"), _):
            return true
        default:
            return false
        }
    }

    /// The text of a whole Parse frame at `index`, as a Query payload would hold it (NUL-terminated), or nil.
    private func parseText(_ buffer: ByteBuffer, _ header: FrameHeader, at index: Int) -> ByteBuffer? {
        let start = index + FrameHeader.size
        // (every idle Parse comes here: the name is skipped in place, without making a String of it)
        guard let nameLength = buffer.withUnsafeReadableBytes({ raw in
            raw[(start - buffer.readerIndex)..<(start - buffer.readerIndex + header.payloadSize)].firstIndex(of: 0)
                .map { $0 - (start - buffer.readerIndex) }
        }) else { return nil }
        return buffer.getSlice(at: start + nameLength + 1, length: header.payloadSize - nameLength - 1)
    }

    private static func queryPayload(_ text: String) -> ByteBuffer? {
        guard text.utf8.count < 64 else { return nil }  // (PoolerCommand's first look takes short texts only)
        var payload = ByteBuffer()
        payload.writeString(text + "\0")
        return payload
    }

    /// A message without a body (ParseComplete, BindComplete, CloseComplete, NoData).
    static func empty(_ id: UInt8, into buffer: inout ByteBuffer) {
        MessageEncoder.frame(id, into: &buffer) { _ in }
    }

}

extension PoolerCommand {
    var isDeferredBegin: Bool {
        if case .deferredBegin = self { return true }
        return false
    }

    /// A SHOW: one row, described by a RowDescription (the SETs have none).
    var returnsRow: Bool {
        switch self {
        case .showServerRole, .showPrimaryReads, .showShard: return true
        default: return false
        }
    }
}

extension ClientConnection {
    /// `DEALLOCATE name` (a Query) of a statement that holds one of PgCat's commands: the server never had it, so
    /// the pooler answers. True when handled.
    func deallocatePoolerCommand(_ payload: ByteBuffer) -> Bool {
        guard !poolerCommandStatements.isEmpty, StatementCommand.mightMatch(payload),
              let command = StatementCommand(query: payload) else { return false }
        guard case .deallocate(let name) = command else {
            if command == .deallocateAll || command == .discardAll { poolerCommandStatements = [:] }  // (then relayed)
            return false
        }
        guard poolerCommandStatements.removeValue(forKey: name) != nil else { return false }
        // A BEGIN is the client's statement as well (the usual DEALLOCATE forgets it there); a command is only here.
        guard statements[name] == nil else { return false }
        var reply = allocate(32)
        MessageEncoder.commandComplete("DEALLOCATE", into: &reply)
        sendReady(into: &reply)
        write(reply)
        return true
    }
}
