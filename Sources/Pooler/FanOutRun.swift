/// `fan_out`: one client statement run on every shard of a sharded pool. Shards are leased in order (shard 0
/// first, so two such runs never hold one shard each while waiting for the other's), the client's messages go to
/// each as soon as it is leased, and when every shard has answered (ReadyForQuery) FanOutMerger puts the client's
/// reply together. The client sends nothing else meanwhile; its CancelRequest reaches every shard.
import Failover
import NIOCore
import PostgresWire
import Sharding

final class FanOutRun {
    /// Replies larger than this in all are refused (54000) rather than held in memory to be merged.
    static let maxBufferedBytes = 64 << 20

    let client: ClientConnection
    let pool: ConnectionPool
    let plan: FanOutPlan
    let batch: ByteBuffer
    /// The batch ends with Sync (extended protocol) rather than being one Query.
    let extended: Bool
    let role: TargetRole?
    private(set) var legs: [FanOutLeg] = []
    private var nextShard = 0
    private(set) var failure: (SQLState, String)?
    private var buffered = 0
    private var timer: Scheduled<Void>?
    private var finished = false

    init(client: ClientConnection, pool: ConnectionPool, plan: FanOutPlan, batch: ByteBuffer, extended: Bool,
         role: TargetRole?) {
        self.client = client
        self.pool = pool
        self.plan = plan
        self.batch = batch
        self.extended = extended
        self.role = role
    }

    func start() {
        let timeout = TimeAmount.milliseconds(Int64(max(pool.settings.connectTimeout, 1)))
        timer = client.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in self?.waitTimedOut() }
        leaseNext()
    }

    private func leaseNext() {
        guard failure == nil, nextShard < pool.shardCount else {
            timer?.cancel()
            finishIfDone()
            return
        }
        let leg = FanOutLeg(run: self, shard: nextShard)
        legs.append(leg)
        nextShard += 1
        switch pool.lease(for: leg, role: role, shard: leg.shard) {
        case .leased(let server):
            granted(leg, server)
        case .waiting:
            leg.waiting = true
        }
    }

    func granted(_ leg: FanOutLeg, _ server: ServerConnection) {
        leg.waiting = false
        guard !finished, failure == nil else {
            pool.release(server)
            leg.done = true
            finishIfDone()
            return
        }
        leg.server = server
        server.resetRelayState()
        server.attach(owner: leg)
        // The client's reported parameters (TimeZone, DateStyle, ...) first, as for any lease: their reply is not
        // part of the statement's.
        if let replay = client.parameterReplay(for: server) {
            leg.repliesToSkip = 1
            server.send(replay.query)
            if replay.appliesSettings {
                // The statement waits until the shard accepted the client's login settings (a role, a
                // statement_timeout): it must never run without them. FanOutLeg.serverRead sends it.
                leg.holdsBatch = true
                server.flush()
                leaseNext()
                return
            }
        }
        sendBatch(on: server)
        leaseNext()
    }

    func sendBatch(on server: ServerConnection) {
        server.tracker.sent(extended ? FrontendID.sync : FrontendID.query)
        server.send(batch)
        server.flush()
    }

    func leaseFailed(_ leg: FanOutLeg, _ error: PoolError) {
        leg.waiting = false
        leg.done = true
        fail(.connectionFailure, "shard \(leg.shard) of pool \(pool.database)/\(pool.user) is unavailable: \(error)")
        finishIfDone()
    }

    private func waitTimedOut() {
        guard !finished, legs.contains(where: \.waiting) else { return }
        stopWaiting(failing: "timed out waiting for a server connection on every shard (pool \(pool.database)/\(pool.user) saturated)")
    }

    /// The legs still waiting for a connection stop, no shard after them is asked, and the run fails (57014).
    private func stopWaiting(failing message: String) {
        for leg in legs where leg.waiting && pool.cancelWait(leg) {
            leg.waiting = false
            leg.done = true
        }
        fail(.queryCanceled, message)
        finishIfDone()
    }

    /// Bytes of one leg's reply arrived; false when the run gave up on holding them.
    func received(_ count: Int) -> Bool {
        buffered += count
        if buffered > Self.maxBufferedBytes {
            fail(.programLimitExceeded, "the replies of the shards exceed \(Self.maxBufferedBytes >> 20) MiB, too much to "
                 + "merge: narrow the query or name a shard")
            return false
        }
        return true
    }

    func fail(_ state: SQLState, _ message: String) {
        if failure == nil { failure = (state, message) }
    }

    func legFinished(_ leg: FanOutLeg) {
        leg.done = true
        if let server = leg.server {
            leg.server = nil
            server.detach(owner: leg)
            // A SET or PREPARE run on every shard is reset before the shards' next clients, as for any connection.
            if server.isCleanlyIdle { pool.reclaim(server, resetSession: false, logger: client.logger) } else { pool.discard(server) }
        }
        finishIfDone()
    }

    func finishIfDone() {
        guard !finished, legs.allSatisfy(\.done), failure != nil || legs.count == pool.shardCount else { return }
        finished = true
        timer?.cancel()
        let reply: ByteBuffer
        if let (state, message) = failure {
            var buffer = client.allocate(256)
            MessageEncoder.errorResponse(severity: .error, state: state, message: message, into: &buffer)
            MessageEncoder.readyForQuery(.idle, into: &buffer)
            reply = buffer
        } else {
            switch FanOutMerger.merge(legs.map(\.reply), plan: plan, allocator: client.context?.channel.allocator ?? ByteBufferAllocator()) {
            case .success(let merged):
                reply = merged
            case .failure(let failure):
                var buffer = client.allocate(256)
                let message = failure.state == .featureNotSupported ? "cannot run across shards: \(failure.message)"
                    : failure.message
                MessageEncoder.errorResponse(severity: .error, state: failure.state, message: message, into: &buffer)
                MessageEncoder.readyForQuery(.idle, into: &buffer)
                reply = buffer
            }
        }
        legs.removeAll()
        client.fanOutFinished(reply)
    }

    /// The client asked to cancel: a cancel to every shard running the statement, and the shards not reached
    /// yet (waiting for a connection, or not asked yet) never run it: the run fails with 57014 as a cancelled
    /// statement does. Completes when the shards have handled their cancels (nil: none was sent).
    func cancel() -> EventLoopFuture<Void>? {
        let sent = legs.compactMap { $0.server?.sendCancel(on: client.eventLoop) }
        if !finished, legs.contains(where: \.waiting) || nextShard < pool.shardCount {
            stopWaiting(failing: "canceling statement due to user request")
        }
        guard !sent.isEmpty else { return nil }
        return EventLoopFuture.whenAllComplete(sent, on: client.eventLoop).map { _ in }
    }

    /// The client is gone: servers still answering are closed, waits are withdrawn.
    func abandon() {
        finished = true
        timer?.cancel()
        for leg in legs {
            if leg.waiting, pool.cancelWait(leg) { leg.waiting = false }
            if let server = leg.server {
                leg.server = nil
                server.detach(owner: leg)
                pool.discard(server)
            }
            leg.done = true
        }
        legs.removeAll()
    }
}

/// One shard's part of a FanOutRun: it waits for that shard's server connection and collects its reply.
final class FanOutLeg: LeaseWaiter, ServerOwner, @unchecked Sendable {
    /// For the server callbacks: a run detaches its legs' servers before it goes.
    unowned let run: FanOutRun
    /// For the lease callbacks, which can come after the run is gone (a connection on its way when it ended).
    private weak var leasingRun: FanOutRun?
    let eventLoop: EventLoop
    private let pool: ConnectionPool
    let shard: Int
    var server: ServerConnection?
    var waiting = false
    var done = false
    /// ReadyForQuery-terminated replies to drop first (the parameter replay).
    var repliesToSkip = 0
    /// The replay applies the client's login settings: the statement is sent after its answer, never after a
    /// refusal (which fails the run and discards the connection).
    var holdsBatch = false
    private var replayRefused = false
    private(set) var reply = ByteBuffer()
    private var pending = ByteBuffer()
    private var discarding = false

    init(run: FanOutRun, shard: Int) {
        self.run = run
        self.leasingRun = run
        self.eventLoop = run.client.eventLoop
        self.pool = run.pool
        self.shard = shard
    }

    func leaseGranted(_ server: ServerConnection) {
        guard let run = leasingRun else { return pool.release(server) }
        run.granted(self, server)
    }
    func leaseFailed(_ error: PoolError) { leasingRun?.leaseFailed(self, error) }
    func poolReplaced() {
        leasingRun?.leaseFailed(self, .serverUnavailable(pool: pool.name, server: "shard \(shard)",
                                                         reason: "a reload replaced the pool"))
    }
    func leaseAgain() {
        guard let run = leasingRun else { return }
        switch pool.lease(for: self, role: run.role, shard: shard) {
        case .leased(let server): run.granted(self, server)
        case .waiting: break
        }
    }

    func serverRead(_ buffer: ByteBuffer, from server: ServerConnection) {
        var incoming = buffer
        pending.writeBuffer(&incoming)
        while let header = FrameHeader.peek(pending, at: pending.readerIndex),
              pending.readableBytes >= header.frameSize {
            guard header.length >= 4 else {  // a length under 4 would never advance this loop
                pending.clear()
                run.fail(.connectionFailure, "shard \(shard): protocol error from server: invalid message length "
                         + "\(header.length)")
                run.legFinished(self)  // not cleanly idle: the connection is discarded
                return
            }
            let frame = pending.readSlice(length: header.frameSize)!
            if repliesToSkip > 0, holdsBatch, header.id == BackendID.errorResponse {
                let fields = try? ErrorFields.decode(frame.getSlice(at: frame.readerIndex + FrameHeader.size,
                                                                    length: header.payloadSize)!)
                server.isBroken = true
                replayRefused = true
                run.fail(SQLState(fields?.sqlState ?? SQLState.connectionFailure.code),
                         "shard \(shard): the login settings could not be applied: \(fields?.message ?? "error")")
            }
            if header.id == BackendID.readyForQuery {
                server.status = frame.getInteger(at: frame.readerIndex + FrameHeader.size, as: UInt8.self)
                    .flatMap(TransactionStatus.init) ?? .idle
                if repliesToSkip > 0 {
                    repliesToSkip -= 1
                    if repliesToSkip == 0, holdsBatch {
                        holdsBatch = false
                        if replayRefused || run.failure != nil {
                            pending.clear()
                            run.legFinished(self)  // the statement never ran here (a refusal discards the connection)
                            return
                        }
                        run.sendBatch(on: server)
                    }
                    continue
                }
                _ = server.tracker.received(header.id)
                var last = frame
                if !discarding { reply.writeBuffer(&last) }
                pending.clear()
                run.legFinished(self)
                return
            }
            guard repliesToSkip == 0, !discarding else { continue }
            if header.id == BackendID.commandComplete {
                server.noteCommandTag(frame, at: frame.readerIndex + FrameHeader.size, length: header.payloadSize)
            }
            var copy = frame
            if run.received(copy.readableBytes) {
                reply.writeBuffer(&copy)
            } else {
                discarding = true
            }
        }
        pending.discardReadBytes()
    }

    func serverReadComplete(from server: ServerConnection) {}

    func serverClosed(_ server: ServerConnection, reason: String) {
        self.server = nil
        run.fail(.connectionFailure, "shard \(shard) failed during the query: \(reason)")
        run.legFinished(self)
    }
}
