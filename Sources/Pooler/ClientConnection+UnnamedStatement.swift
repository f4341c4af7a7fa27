/// The unnamed prepared statement in transaction mode. PostgreSQL keeps it per session until the next unnamed Parse
/// or simple Query, and drivers rely on that: lib/pq and pgx (describe mode) send Parse+Describe+Sync, then
/// Bind+Execute+Sync. A Sync may end the transaction, so the Bind can land on another server connection, one that
/// holds another client's unnamed statement: the Bind would run that client's query with these parameters.
///
/// So each server connection records whose unnamed Parse it was sent in the current unit (up to the next Sync or
/// Query: an error in a unit makes the server skip its Parse, so only within the unit is the statement surely this
/// client's), and a Bind or Describe of the unnamed statement anywhere else is preceded by this client's last
/// unnamed Parse (its reply dropped), or by a Close of the unnamed statement when the client has none, which makes
/// the server answer 26000 as PostgreSQL would. Parse and Bind in one unit (libpq, psycopg, JDBC, pgbench) need
/// nothing added.
import NIOCore
import PostgresWire

extension ClientConnection {
    enum UnnamedStatementUse {
        case none
        /// An unnamed Parse: the server's unnamed statement becomes this client's.
        case parse
        /// A Bind, or a Describe of the statement, that uses the unnamed statement.
        case use
        /// A Close of the unnamed statement.
        case close
        /// The frame's first bytes have not all arrived.
        case undecided
    }

    /// What a frame with this `StatementReference` does with the unnamed statement.
    static func unnamedStatementUse(_ id: UInt8, _ reference: StatementReference) -> UnnamedStatementUse {
        switch reference {
        case .none, .named: return .none
        case .undecided: return .undecided
        case .unnamed:
            switch id {
            case FrontendID.parse: return .parse
            case FrontendID.close: return .close
            default: return .use  // Bind, Describe
            }
        }
    }

    /// A whole unnamed Parse is on its way to `server`: remember it (copied only when it changed).
    func noteUnnamedParse(_ payload: ByteBuffer, on server: ServerConnection) {
        var definition = payload
        definition.moveReaderIndex(forwardBy: 1)  // the empty name
        if savedUnnamedParse != definition {
            savedUnnamedParse = ByteBuffer(ByteBufferView(definition.readableBytesView))
            savedUnnamedSetsConfig = SessionPin.callsSetConfig(definition)
        }
        server.unnamedParsedInUnit = true
    }

    /// An unnamed Parse that no server gets (the pooler refused it or skips it, or a fan-out ran it on every
    /// shard): the client's last unnamed statement is gone, as after a Parse that fails in PostgreSQL, so a later
    /// lone Bind gets 26000 instead of running the client's earlier statement with the new parameters. (PostgreSQL
    /// keeps the earlier one when the Parse is only skipped after an earlier error; forgetting it there too turns
    /// that rare Bind into an error, never into the wrong statement.)
    func forgetUnnamedStatement(ifParse id: UInt8, _ payload: ByteBuffer) {
        if id == FrontendID.parse, payload.getInteger(at: payload.readerIndex, as: UInt8.self) == 0 {
            savedUnnamedParse = nil
        }
    }

    /// A Bind or Describe of the unnamed statement is about to go to `server`: make the statement there this
    /// client's. `before` forwards the client's earlier messages first.
    func ensureUnnamedStatement(on server: ServerConnection, before: () -> Void) {
        guard !server.unnamedParsedInUnit else { return }
        before()
        planRetry = nil
        server.unnamedParsedInUnit = true
        if let definition = savedUnnamedParse {
            // Bound in a later unit (lib/pq, pgx): its set_config runs again here, after this server's reset.
            if savedUnnamedSetsConfig { server.dirtySettings = true }
            var parse = allocate(definition.readableBytes + 8)
            MessageEncoder.frame(FrontendID.parse, into: &parse) {
                $0.writeInteger(UInt8(0))
                $0.writeImmutableBuffer(definition)
            }
            server.tracker.append(.injected(.parse(statement: "")))
            server.send(parse)
        } else {
            injectClose("", on: server)  // the client has none: the server answers the Bind with 26000
        }
    }
}
