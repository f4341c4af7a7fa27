/// `automatic_sharding_key` on the client side: the shard of each request from its statements (each decided on
/// its own, a `$n` read from its Bind), and Binds that arrive after the lease (behind a Flush, past the look-ahead)
/// checked against the shard the request went to.
import NIOCore
import PostgresWire
import Sharding

extension ClientConnection {
    /// `automatic_sharding_key`: the shard of the request at the front of `buffer`: a Query (each of its
    /// statements), or the extended-protocol statements up to the first Sync, each a Parse or a statement with the
    /// Bind that follows. Returns false after refusing a request that would have to be split across shards.
    func prepareAutomaticShard(_ buffer: ByteBuffer) -> Bool {
        automaticShard = nil
        automaticShardAwaitsBind = false
        automaticBindsDecided = 0
        automaticQueryDecided = false
        guard let pool, let key = pool.automaticKey, pool.shardCount > 1, routing.shard == nil else { return true }
        var decisions: [AutomaticSharding.Decision] = []
        var parsed: String?  // a Parse's text, waiting for its Bind
        var parsedName = ""
        var index = buffer.readerIndex
        func decide(_ text: String, _ bind: BindMessage?) {
            if let decision = automaticDecision(text, bind, key: key, pool: pool) { decisions.append(decision) }
            if bind != nil { automaticBindsDecided += 1 }
        }
        scan: while let header = FrameHeader.peek(buffer, at: index), header.length >= 4,
                    header.frameSize <= maxMessageSize, buffer.writerIndex - index >= header.frameSize {
            guard var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize) else { break }
            switch header.id {
            case FrontendID.query:
                if decisions.isEmpty, parsed == nil, let text = payload.readNullTerminatedString() {
                    decide(text, nil)
                    automaticQueryDecided = index == buffer.readerIndex  // (the relay need not look at it again)
                }
                break scan
            case FrontendID.parse:
                if let text = parsed { decide(text, nil) }  // a Parse without a Bind of its own
                parsedName = payload.readNullTerminatedString() ?? ""
                parsed = payload.readNullTerminatedString()
            case FrontendID.bind:
                guard let bind = BindMessage(payload) else { break scan }
                var text: String?
                if let statement = parsed, parsedName == bind.statement {
                    text = statement
                    parsed = nil
                } else {
                    text = knownText(ofStatement: bind.statement)
                }
                if let text { decide(text, bind) }
            case FrontendID.describe:
                // A statement the pooler knows, described before its Bind: its Parse was answered without a server,
                // so the Describe comes alone (asyncpg on a new connection). Decided as that Parse would be.
                if let name = payload.readStatementName(), parsed == nil || parsedName != name,
                   let text = knownText(ofStatement: name) {
                    decide(text, nil)
                }
            case FrontendID.sync:
                break scan
            default:
                break
            }
            index += header.frameSize
        }
        if let text = parsed { decide(text, nil) }
        let decision = AutomaticSharding.combine(decisions)
        if let refusal = Self.refusal(of: decision, key: key) {
            sendError(.featureNotSupported, refusal)
            discardUntilSync = true
            return false
        }
        switch decision {
        case .awaitsBind:
            automaticShardAwaitsBind = true
        case .shard(let shard):
            automaticShard = shard
        default:
            break
        }
        return true
    }

    /// The 0A000 message for a decision the pooler cannot carry out (it does not split a request), or nil.
    private static func refusal(of decision: AutomaticSharding.Decision, key: AutomaticSharding.Key) -> String? {
        switch decision {
        case .updatesKey:
            return "the sharding key \(key.table).\(key.column) cannot be updated: the row would belong on another "
                + "shard (delete it and insert it again)"
        case .spansShards(let shards):
            return "the rows of this INSERT belong on different shards (\(shards.map(String.init).joined(separator: ", "))): "
                + "send one statement per shard"
        case .statementsSpanShards(let shards):
            return "the statements of this request belong on different shards "
                + "(\(shards.map(String.init).joined(separator: ", "))): send them separately, one Sync (or Query) per shard"
        case .none, .awaitsBind, .shard:
            return nil
        }
    }

    /// A whole Query relayed to `server` inside a transaction (the lease was decided by an earlier request): the
    /// refusal when its key names another shard than the server's, or it could not run on one shard; nil when it
    /// may go on. (Before, such a Query went to the transaction's shard: its reads found nothing and its writes
    /// landed on the wrong shard; a Bind was checked already.)
    func queryRefusal(_ payload: ByteBuffer, on server: ServerConnection) -> String? {
        guard let pool, let key = pool.automaticKey, var text = payload.getString(
            at: payload.readerIndex, length: payload.readableBytes) else { return nil }
        if text.hasSuffix("\0") { text.removeLast() }
        guard let decision = automaticDecision(text, nil, key: key, pool: pool) else { return nil }
        if case .shard(let shard) = decision {
            guard shard != server.address.shard else { return nil }
            return "this statement belongs on shard \(shard), the transaction it is part of on shard "
                + "\(server.address.shard): a transaction (in session mode, a session) runs on one shard"
        }
        return Self.refusal(of: decision, key: key)
    }

    /// The decision for one statement `text`, with its Bind when it came.
    private func automaticDecision(_ text: String, _ bind: BindMessage?, key: AutomaticSharding.Key,
                                   pool: ConnectionPool) -> AutomaticSharding.Decision? {
        guard case .success(let facts) = runtime.queryParser.facts(text) else { return nil }
        return AutomaticSharding.decide(facts, key: key, sharder: pool.sharder, shards: pool.shardCount,
                                        bindArrived: bind != nil) { number in
            guard let bind, number >= 1, number <= bind.values.count, let bytes = bind.values[number - 1] else {
                return nil
            }
            if bind.binary[number - 1] {
                // int2 / int4 / int8 in network order, by length (PgCat)
                guard [2, 4, 8].contains(bytes.count) else { return nil }
                let raw = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                switch bytes.count {
                case 2: return Int64(Int16(truncatingIfNeeded: raw))
                case 4: return Int64(Int32(truncatingIfNeeded: raw))
                default: return Int64(bitPattern: raw)
                }
            }
            return Int64(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// Whether the Query about to be relayed is the one the lease was decided by (once).
    func takeQueryDecidedAtLease() -> Bool {
        guard automaticQueryDecided else { return false }
        automaticQueryDecided = false
        return true
    }

    /// A whole Bind relayed to `server` after the lease was decided: the shard its key names, when that is not the
    /// server's (the statements of one request must stay on one shard); nil when it may go on.
    func bindNamesAnotherShard(_ payload: ByteBuffer, on server: ServerConnection) -> Int? {
        if automaticBindsDecided > 0 {
            automaticBindsDecided -= 1  // decided with the lease
            return nil
        }
        guard let pool, let key = pool.automaticKey, let bind = BindMessage(payload),
              let text = knownText(ofStatement: bind.statement),
              case .shard(let shard)? = automaticDecision(text, bind, key: key, pool: pool),
              shard != server.address.shard else { return nil }
        return shard
    }

    /// The text of the client's statement `name` as the pooler last saw it parsed (the unnamed one: its last
    /// unnamed Parse), or nil.
    func knownText(ofStatement name: String) -> String? {
        if poolMode == .session { return sessionStatementTexts[name] }
        // (Both copies start at the statement's text.)
        guard var definition = name.isEmpty ? savedUnnamedParse : statements[name]?.definition else { return nil }
        return definition.readNullTerminatedString()
    }

    static let sessionStatementTextsLimit = 10_000

    /// Session mode: notes what a whole Parse, Close or Query (SQL `DEALLOCATE name`) relayed at `index` does to the
    /// client's statements.
    func noteSessionStatement(_ header: FrameHeader, in buffer: ByteBuffer, at index: Int) {
        guard var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize) else { return }
        if header.id == FrontendID.query {
            // (DEALLOCATE ALL and DISCARD ALL clear them all when the server's tag says so)
            if StatementCommand.mightMatch(payload), case .deallocate(let name)? = StatementCommand(query: payload) {
                sessionStatementTexts[name] = nil
            }
        } else if header.id == FrontendID.parse {
            guard let name = payload.readNullTerminatedString(), let text = payload.readNullTerminatedString() else {
                return
            }
            // (A second Parse of a name fails on the server: the first text stays. Past the bound the texts are
            // forgotten, and the Binds of forgotten statements go unchecked.)
            guard name.isEmpty || sessionStatementTexts[name] == nil else { return }
            if sessionStatementTexts.count >= Self.sessionStatementTextsLimit { sessionStatementTexts.removeAll() }
            sessionStatementTexts[name] = text
        } else if let name = payload.readStatementName() {
            sessionStatementTexts[name] = nil
        }
    }
}
