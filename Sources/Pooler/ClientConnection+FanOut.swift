/// `fan_out`: a statement with no shard in a sharded pool runs on every shard when FanOutPlan says the combined
/// replies are the right answer, is refused with 0A000 when they would not be, and otherwise (no sharded data
/// touched) takes the usual way to `default_shard`.
import NIOCore
import PostgresWire
import Sharding

extension ClientConnection {
    /// What is at the front of the client's buffer, for fan-out.
    enum FanOutBatch {
        /// More bytes are needed to see the whole batch.
        case incomplete
        /// One Query, or unnamed Parse/Bind/Describe/Execute messages up to a Sync: `length` bytes.
        case runnable(text: String, length: Int, extended: Bool)
        /// A form that cannot be sent to every shard as it is (named statements, Flush, several Executes).
        case unsupported(text: String?)
    }

    /// Starts a fan-out, refuses the statement, or returns nil for the usual lease. True: handled (the batch is
    /// taken, or an error is on its way); false: wait for more bytes.
    func fanOutIfNeeded(_ buffer: inout ByteBuffer) -> Bool? {
        guard let pool, pool.fanOutEnabled, pool.shardCount > 1, poolMode == .transaction, pin == nil,
              routing.shard == nil, automaticShard == nil, !automaticShardAwaitsBind else { return nil }
        let batch = Self.fanOutBatch(buffer, maxMessageSize: maxMessageSize, statements: statements)
        let text: String?
        switch batch {
        case .incomplete: return false
        case .runnable(let found, _, _): text = found
        case .unsupported(let found): text = found
        }
        guard let text, case .success(let facts) = runtime.queryParser.facts(text) else { return nil }
        let plan = FanOutPlan.decide(facts)
        switch (plan, batch) {
        case (.oneShard, _):
            return nil
        case (.refuse(let reason), _):
            refuseFanOut(reason)
            return true
        case (_, _) where deferredBegin != nil:
            // The client's BEGIN waits for a statement that names its shard: a transaction runs on one shard.
            refuseFanOut("inside a transaction, which runs on one shard (name its shard with a key in its first "
                         + "statement, SET SHARD or a shard comment, or run the query outside the transaction)")
            return true
        case (_, .unsupported):
            refuseFanOut("named prepared statements, Flush or several statements in one batch (use unnamed statements "
                         + "and one Sync per statement)")
            return true
        case (_, .runnable(_, let length, let extended)):
            let role = targetRole(for: buffer)
            let messages = buffer.readSlice(length: length)!
            // Its unnamed statement is on every shard, a later lone Bind would land on one: 26000 instead.
            savedUnnamedParse = nil
            let run = FanOutRun(client: self, pool: pool, plan: plan, batch: messages, extended: extended, role: role)
            fanOut = run
            stats.set(.active)
            if logsDebug { logger.debug("fan-out", metadata: ["shards": "\(pool.shardCount)", "plan": "\(plan)"]) }
            run.start()
            return true
        default:
            return nil
        }
    }

    private func refuseFanOut(_ reason: String) {
        sendError(.featureNotSupported, "cannot run across shards: \(reason)")
        discardUntilSync = true
    }

    /// The merged reply (or error) of a fan-out is ready.
    func fanOutFinished(_ reply: ByteBuffer) {
        fanOut = nil
        stats.set(.idle)
        write(reply)
        if closeWhenIdle {  // a graceful shutdown waited for it
            fatal(.adminShutdown, "terminating connection due to administrator command")
            return
        }
        flushIfNeeded()
        drive()
        flushIfNeeded()
    }

    static func fanOutBatch(_ buffer: ByteBuffer, maxMessageSize: Int,
                            statements: [String: ClientStatement]) -> FanOutBatch {
        var index = buffer.readerIndex
        var text: String?
        var executes = 0
        var supported = true
        while let header = FrameHeader.peek(buffer, at: index) {
            guard header.length >= 4, header.frameSize <= maxMessageSize else { return .unsupported(text: text) }
            guard buffer.writerIndex - index >= header.frameSize else { return .incomplete }
            var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize)!
            index += header.frameSize
            switch header.id {
            case FrontendID.query where index - header.frameSize == buffer.readerIndex:
                guard let query = payload.readNullTerminatedString() else { return .unsupported(text: nil) }
                return .runnable(text: query, length: header.frameSize, extended: false)
            case FrontendID.parse:
                let name = payload.readNullTerminatedString()
                text = payload.readNullTerminatedString()
                if name != "" { supported = false }
            case FrontendID.bind:
                let portal = payload.readNullTerminatedString()
                let statement = payload.readNullTerminatedString() ?? ""
                if portal != "" || statement != "" { supported = false }
                if text == nil, !statement.isEmpty, var definition = statements[statement]?.definition {
                    text = definition.readNullTerminatedString()
                }
            case FrontendID.describe:
                _ = payload.readInteger(as: UInt8.self)
                if payload.readNullTerminatedString() != "" { supported = false }
            case FrontendID.execute:
                executes += 1
                let portal = payload.readNullTerminatedString()
                let maxRows = payload.readInteger(as: Int32.self) ?? 0
                if portal != "" || maxRows != 0 || executes > 1 { supported = false }
            case FrontendID.sync:
                guard supported, executes == 1, let text else { return .unsupported(text: text) }
                return .runnable(text: text, length: index - buffer.readerIndex, extended: true)
            default:
                return .unsupported(text: text)
            }
        }
        return .incomplete
    }
}
