/// Which servers a new transaction may use: PgCat's `SET SERVER ROLE` / `SET PRIMARY READS` per client, and
/// read/write splitting by the PostgreSQL parser over the messages that start the transaction.
import Failover
import Foundation
import NIOCore
import PostgresWire
import QueryParser
import Sharding

/// A client's routing choices (PgCat's custom SQL); nil means the pool's setting.
struct ClientRouting {
    /// `SET SERVER ROLE TO 'primary'|'replica'|'any'`: a fixed role, and the parser off for this client.
    var role: TargetRole?
    /// `SET SERVER ROLE TO 'auto'` turns the parser on; 'default' back to the pool's setting.
    var parser: Bool?
    var primaryReads: Bool?
    /// `SET SHARD` / `SET SHARDING KEY` / a comment: the shard until changed (PgCat keeps it per client).
    var shard: Int?
}

extension ClientConnection {
    /// The role for the transaction the messages at the front of `buffer` start.
    func targetRole(for buffer: ByteBuffer) -> TargetRole {
        primaryForReadYourWrites = false
        guard let pool else { return .any }
        if let role = routing.role { return role }
        let settings = pool.routing
        guard settings.readWriteSplitting, routing.parser ?? settings.queryParserEnabled, pool.hasReplicas else {
            return settings.defaultRole
        }
        let primaryReads = routing.primaryReads ?? settings.primaryReadsEnabled
        var role: TargetRole?
        var parsedUnnamed = false  // (an unnamed statement parsed here decides with its Parse)
        var index = buffer.readerIndex
        // Every statement up to the first Sync or Query decides together (PgCat looks at each Parse too).
        // Only well-formed whole frames: the relay validates each frame before sending it; a bad one found here
        // just ends the look-ahead (the relay then refuses it with 08P01).
        scan: while let header = FrameHeader.peek(buffer, at: index), header.length >= 4,
                    header.frameSize <= maxMessageSize, buffer.writerIndex - index >= header.frameSize {
            let payloadStart = index + FrameHeader.size
            // The statement text's place in `buffer` (read as bytes: most texts are plain reads, told apart
            // without making a String).
            var text: Range<Int>?
            switch header.id {
            case FrontendID.query:
                if let decided = roleOfSQLExecute(header, at: payloadStart, in: buffer, primaryReads: primaryReads,
                                                  settings: settings) {
                    role = role.map { ReadWriteRouting.combine($0, decided) } ?? decided
                    break scan  // a Query ends the look-ahead
                }
                text = payloadStart..<(payloadStart + max(0, header.payloadSize - 1))
            case FrontendID.parse:
                // (ByteBufferView indices are the buffer's own, and the whole frame is readable here.)
                let frame = buffer.readableBytesView[payloadStart..<(index + header.frameSize)]
                guard let nameEnd = frame.firstIndex(of: 0),
                      let textEnd = frame[(nameEnd + 1)...].firstIndex(of: 0) else { break scan }
                text = (nameEnd + 1)..<textEnd
                if nameEnd == payloadStart { parsedUnnamed = true }
            case FrontendID.bind, FrontendID.describe:
                // A Bind of a named statement, or a Describe of one: asyncpg prepares with Parse, Describe, Flush
                // and binds later, and the statement cache answered the Parse, so the Describe is what leases.
                guard var payload = buffer.getSlice(at: payloadStart, length: header.payloadSize) else { break scan }
                if header.id == FrontendID.bind { _ = payload.readNullTerminatedString() }  // (the portal)
                // (a Describe of a portal: its statement came with its Bind)
                guard let name = header.id == FrontendID.bind ? payload.readNullTerminatedString()
                                                              : payload.readStatementName() else { break }
                let known: ReadWriteRouting.Intent??
                if name.isEmpty {
                    // The unnamed statement of an earlier unit (lib/pq, pgx, asyncpg's long texts): its saved text.
                    known = parsedUnnamed ? nil : knownText(ofStatement: "").map { intent(of: $0, limit: settings.maxParseLength) }
                } else {
                    known = namedStatementIntent(name, limit: settings.maxParseLength)
                }
                if let known {
                    let decided = ReadWriteRouting.role(for: known, primaryReads: primaryReads,
                                                        fallback: settings.defaultRole)
                    role = role.map { ReadWriteRouting.combine($0, decided) } ?? decided
                    if role == .primary { break scan }
                }
            case FrontendID.functionCall:
                // The fast-path call names its function by OID only; libpq uses it for large objects (lo_creat,
                // lowrite): the primary.
                role = .primary
                break scan
            case FrontendID.sync:
                break scan
            default:
                break
            }
            if let text {
                let decided = ReadWriteRouting.role(for: intent(of: text, in: buffer, limit: settings.maxParseLength),
                                                    primaryReads: primaryReads, fallback: settings.defaultRole)
                role = role.map { ReadWriteRouting.combine($0, decided) } ?? decided
                if role == .primary || header.id == FrontendID.query { break scan }
            }
            index += header.frameSize
        }
        let decided = role ?? settings.defaultRole
        primaryForReadYourWrites = decided != .primary && withinReadYourWritesWindow
        if primaryForReadYourWrites {
            return .primary  // its own recent write may not have reached the replicas yet
        }
        return decided
    }

    /// The read/write intent of the client's named statement `name` (`.some(nil)` when its text is not classified),
    /// worked out once and kept with it; nil when the client has no such statement.
    private func namedStatementIntent(_ name: String, limit: Int?) -> ReadWriteRouting.Intent?? {
        guard var statement = statements[name] else { return nil }
        if let known = statement.routingIntent { return known }
        var definition = statement.definition
        let found = definition.readNullTerminatedString().flatMap { intent(of: $0, limit: limit) }
        statement.routingIntent = .some(found)
        statements[name] = statement
        return .some(found)
    }

    /// The role for a Query that is `EXECUTE name(...)` of a statement this client PREPAREd at the SQL level: the
    /// prepared statement decides (the PREPARE is replayed wherever the EXECUTE lands, so a read may go to a
    /// replica). nil when the Query is not such an EXECUTE.
    private func roleOfSQLExecute(_ header: FrameHeader, at payloadStart: Int, in buffer: ByteBuffer, primaryReads: Bool,
                                  settings: ConnectionPool.RoutingSettings) -> TargetRole? {
        guard !sqlStatements.isEmpty, let payload = buffer.getSlice(at: payloadStart, length: header.payloadSize),
              StatementCommand.mightMatch(payload), case .execute(let name)? = StatementCommand(query: payload),
              let prepare = sqlStatements[name] else { return nil }
        var intent: ReadWriteRouting.Intent?
        if let execute = payload.getString(at: payload.readerIndex, length: max(0, payload.readableBytes - 1)),
           settings.maxParseLength.map({ prepare.utf8.count <= $0 && execute.utf8.count <= $0 }) ?? true {
            intent = Self.routingIntent(runtime.queryParser.intent(execute: execute, prepare: prepare))
        }
        return ReadWriteRouting.role(for: intent, primaryReads: primaryReads, fallback: settings.defaultRole)
    }

    /// Whether read/write splitting picks the server per transaction for this client (what `targetRole` checks).
    var routesEachTransaction: Bool {
        guard let pool, routing.role == nil else { return false }
        let settings = pool.routing
        return settings.readWriteSplitting && (routing.parser ?? settings.queryParserEnabled) && pool.hasReplicas
    }

    /// `automatic_sharding_key` picks the shard of each transaction (the client set none itself).
    var shardsEachTransaction: Bool {
        guard let pool, routing.shard == nil else { return false }
        return pool.automaticKey != nil && pool.shardCount > 1
    }

    /// The client's last transaction on the primary ended less than `read_your_writes_window` ago.
    var withinReadYourWritesWindow: Bool {
        guard let pool, pool.routing.readYourWritesWindow > 0, let wrote = lastPrimaryTransaction else { return false }
        return eventLoop.now - wrote < .milliseconds(Int64(pool.routing.readYourWritesWindow))
    }

    /// The intent of the UTF-8 text at `range` of `buffer`.
    private func intent(of range: Range<Int>, in buffer: ByteBuffer, limit: Int?) -> ReadWriteRouting.Intent? {
        if let limit, range.count > limit { return nil }  // too long to parse: the primary
        let parser = runtime.queryParser
        let found = buffer.withUnsafeReadableBytes { raw in
            parser.intent(utf8: UnsafeRawBufferPointer(rebasing: raw[(range.lowerBound - buffer.readerIndex)..<(range.upperBound - buffer.readerIndex)]))
        }
        return Self.routingIntent(found)
    }

    private func intent(of text: String, limit: Int?) -> ReadWriteRouting.Intent? {
        if let limit, text.utf8.count > limit { return nil }  // too long to parse: the primary
        return Self.routingIntent(runtime.queryParser.intent(text))
    }

    private static func routingIntent(_ found: QueryFacts.Intent?) -> ReadWriteRouting.Intent? {
        guard let intent = found else { return nil }
        switch intent {
        case .read: return .read
        case .write: return .write
        case .neutral: return .neutral
        case .begin(let readOnly): return .begin(readOnly: readOnly)
        }
    }

    /// PgCat's comment routing: `shard_id_regex` or `sharding_key_regex` (capture group 1) matched against the first
    /// `regex_search_limit` bytes of a Query or Parse sets the client's shard, and the message goes on as usual.
    /// A shard number the pool does not have is refused (PgCat fails the checkout with InvalidShardId): ERROR 22023,
    /// the Query answered, a Parse's messages skipped to Sync; returns false then.
    func noteShardComment(_ header: FrameHeader, in buffer: ByteBuffer) -> Bool {
        guard let pool, pool.shardCount > 1, pool.shardIDRegex != nil || pool.shardingKeyRegex != nil,
              header.id == FrontendID.query || header.id == FrontendID.parse else { return true }
        let length = min(header.payloadSize, pool.regexSearchLimit)
        guard let bytes = buffer.getBytes(at: buffer.readerIndex + FrameHeader.size, length: length) else { return true }
        let text = String(decoding: bytes, as: UTF8.self)
        let range = NSRange(text.startIndex..., in: text)
        if let regex = pool.shardIDRegex, let match = regex.firstMatch(in: text, range: range), match.numberOfRanges > 1,
           let group = Range(match.range(at: 1), in: text) {
            guard let shard = Int(text[group]), shard < pool.shardCount else {
                sendError(SQLState("22023"), "shard \(text[group]) named in the query's comment is not configured: the "
                          + "pool has \(pool.shardCount) shards (shard numbers start at 0)")
                if header.id == FrontendID.query { sendReady() } else { discardUntilSync = true }
                return false
            }
            routing.shard = shard
            return true
        }
        if let regex = pool.shardingKeyRegex, let match = regex.firstMatch(in: text, range: range),
           match.numberOfRanges > 1, let group = Range(match.range(at: 1), in: text) {
            guard let key = Int64(text[group]) else {
                // (before, ignored: the statement ran on whatever shard the client was on)
                sendError(SQLState("22023"), "sharding key \(text[group].prefix(64)) named in the query's comment is not "
                          + "a bigint")
                if header.id == FrontendID.query { sendReady() } else { discardUntilSync = true }
                return false
            }
            routing.shard = pool.sharder.shard(of: key, shards: pool.shardCount)
        }
        return true
    }

    /// Answers PgCat's custom SQL; false if `payload` is not one of its commands.
    func answerPoolerCommand(_ payload: ByteBuffer) -> Bool {
        guard let command = PoolerCommand(query: payload), pool != nil else { return false }
        var buffer = allocate(128)
        perform(command, into: &buffer)
        sendReady(into: &buffer)
        write(buffer)
        return true
    }

    /// Carries out `command` and writes its reply (a one-row result with its RowDescription, a CommandComplete, or
    /// an ErrorResponse), without ReadyForQuery.
    func perform(_ command: PoolerCommand, into buffer: inout ByteBuffer) {
        guard let pool else { return }
        switch command {
        case .setServerRole(let role):
            switch role {
            case .primary: routing.role = .primary; routing.parser = false
            case .replica: routing.role = .replica; routing.parser = false
            case .any: routing.role = .any; routing.parser = false
            case .auto: routing.role = nil; routing.parser = true
            case .default: routing.role = nil; routing.parser = nil
            }
            MessageEncoder.commandComplete("SET SERVER ROLE", into: &buffer)
        case .setPrimaryReads(let reads):
            switch reads {
            case .on: routing.primaryReads = true
            case .off: routing.primaryReads = false
            case .default: routing.primaryReads = nil
            }
            MessageEncoder.commandComplete("SET PRIMARY READS", into: &buffer)
        case .showServerRole:
            let value: String
            switch routing.role {
            case .primary?: value = "primary"
            case .replica?: value = "replica"
            case .any?: value = "any"
            case nil:
                let parsing = (routing.parser ?? pool.routing.queryParserEnabled) && pool.routing.readWriteSplitting
                value = parsing ? "auto" : pool.routing.defaultRole.rawValue
            }
            singleValue("server role", value, into: &buffer)
        case .showPrimaryReads:
            singleValue("primary reads", (routing.primaryReads ?? pool.routing.primaryReadsEnabled) ? "on" : "off",
                        into: &buffer)
        case .setShardingKey(let key):
            routing.shard = pool.shardCount > 1 ? pool.sharder.shard(of: key, shards: pool.shardCount) : 0
            MessageEncoder.commandComplete("SET SHARDING KEY", into: &buffer)
        case .setShard(let shard):
            if let shard, shard >= pool.shardCount {
                if deferredBegin != nil { failDeferredTransaction() }  // (as in sendError)
                let current = routing.shard.map(String.init) ?? "unset"
                MessageEncoder.errorResponse(
                    severity: .error, state: SQLState("22023"),
                    message: "shard \(shard) is not configured \(pool.shardCount), staying on shard \(current) "
                        + "(shard numbers start at 0)", into: &buffer)
            } else {
                routing.shard = shard ?? Int.random(in: 0..<pool.shardCount)
                MessageEncoder.commandComplete("SET SHARD", into: &buffer)
            }
        case .showShard:
            singleValue("shard", routing.shard.map(String.init) ?? "unset", into: &buffer)
        case .deferredBegin(let query):
            deferBegin(query: query, into: &buffer)
        }
    }

    private func singleValue(_ column: String, _ value: String, into buffer: inout ByteBuffer) {
        var result = AdminResult([(column, .text)], tag: "SELECT 1")
        result.append([.text(value)])
        result.encode(into: &buffer)
    }
}
