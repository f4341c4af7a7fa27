/// One client of the pooler: startup and authentication, then relaying its messages to a leased server
/// connection and the server's replies back. Runs entirely on the client channel's event loop.
import Config
import Failover
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresWire

final class ClientConnection: ChannelInboundHandler, DirectReadReceiver, LeaseWaiter, ServerOwner, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case startup
        /// The password exchange (`authMachine`).
        case authenticating
        /// auth_query is looking up the user's password on a server.
        case lookingUpPassword
        /// Authenticated; waiting for a server connection to learn the parameters to report, or to check the
        /// client's login settings on.
        case awaitingParameters
        case ready
        case closed
    }

    let runtime: PoolerRuntime
    let eventLoop: EventLoop
    /// The runtime's logger. `logger` adds this client's id, user and database, built only when something is
    /// logged: set at every login, that metadata was ~3% of the pooler's user CPU per `pgbench -C` connection.
    let baseLogger: Logger
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "client_id"] = "\(key.processID)"
        if !user.isEmpty { logger[metadataKey: "user"] = "\(user)" }
        if !database.isEmpty { logger[metadataKey: "database"] = "\(database)" }
        return logger
    }
    /// Whether debug messages are logged (checked before building `logger` on common paths).
    var logsDebug: Bool { baseLogger.logLevel <= .debug }
    var context: ChannelHandlerContext?
    /// A payload-free enum: the relay checks it several times per message, and an enum carrying the auth machine
    /// was copied (with retains) at every check.
    var phase: Phase = .startup
    /// The password exchange in progress (phase `.authenticating`).
    var authMachine: ClientAuthStateMachine?
    /// Client bytes not handled yet.
    var inbox: ByteBuffer?
    /// Writes to the client (it knows whether anything awaits a flush), straight to the socket from the client's
    /// 16th lease (plaintext only).
    let writer = DirectSocketWriter()
    /// Server leases left before writes go direct: finding the descriptor costs about as much as the direct path
    /// saves in 15-20 transactions, so a client that connects for a few transactions keeps NIO's path (`-C`).
    var leasesBeforeDirectWrites = 16
    var admitted = false
    /// This connection carried a CancelRequest and stays open until the cancel reached the server.
    var awaitsCancelDelivery = false
    /// Counted under its user's `max_client_connections` (after authentication).
    var admittedForUser = false
    let maxMessageSize: Int
    let idleTransactionTimeout: Int64

    // Session identity
    var user = ""
    var database = ""
    var applicationName = ""
    /// The client channel's writability as of its last change (every lease checks it: reading it here spares a
    /// cold read of NIO's channel object when many clients take turns).
    var clientWritable = true
    /// Reported parameters the client chose (startup packet or SET), replayed on each server connection.
    var trackedParameters: [String: String] = [:] { didSet { trackedFingerprint = nil } }
    /// `ParameterFingerprint` of `trackedParameters`, computed when first needed after a change.
    var trackedFingerprint: Int?
    /// Other settings the client chose at login (`options`, or any other startup parameter), applied on each server
    /// connection it uses.
    var sessionSettings: [SessionSetting] = []
    /// The reported parameters (TimeZone, DateStyle, application_name, ...) the client gave at login: what a RESET
    /// puts back (see SettingsReset).
    var loginTrackedParameters: [String: String] = [:]
    /// The client's prepared statements (by name, "" for the unnamed one) whose text is a reset of settings or a
    /// SET (SettingsReset), and the resets and sets the unit's Binds of them made, in order (ClientConnection+Relay).
    var resetStatements: [String: SettingsReset] = [:]
    var setStatements: [String: SettingsReset] = [:]
    var restoreAtSync: [SettingsReset] = []
    /// The pooler's restore after a reset, sent once the client's unit (its Sync or Query) is answered without an
    /// error; the client's later messages wait for that answer (ClientConnection+ServerStream).
    var restoreAfterUnit: ByteBuffer?
    /// A client's `BEGIN` the pooler answered itself, to be sent ahead of the transaction's first request on the
    /// server that request is routed to (automatic sharding: ClientConnection+DeferredBegin); `deferredBeginSent`:
    /// it was, and its answer is awaited with the settings replay's.
    var deferredBegin: ByteBuffer?
    /// The pooler raised an error while that BEGIN waited: the client is in a failed transaction block, which no
    /// server holds; the pooler answers it as Postgres would (25P02 until ROLLBACK or COMMIT).
    var deferredTransactionFailed = false
    /// That BEGIN, sent at the lease, while its answer is awaited (with the settings replay's).
    var sentBegin: SentBegin?
    /// The client's prepared statements (by name) that hold one of PgCat's commands, as Query payloads: the pooler
    /// answers their Binds and Executes (ClientConnection+PoolerCommandStatements).
    var poolerCommandStatements: [String: ByteBuffer] = [:]
    /// Portals bound to such statements, until the unit's Sync.
    var poolerCommandPortals: [String: PoolerCommand] = [:]
    /// Login settings a server has yet to accept (a pool remembers the ones it has seen accepted).
    var settingsToCheck: [SessionSetting] = []
    /// The `search_path` names `pgml` (ML routing only): the login's `search_path` at each transaction's start, then
    /// as the transaction's own SET / RESET / DISCARD ALL change it (in transaction mode a SET does not outlive its
    /// transaction: the server connection is reset after it, unless `cleanup_server_connections` is off).
    var pgmlOnSearchPath = false
    var pgmlOnLoginSearchPath = false
    var pool: ConnectionPool? {
        didSet {
            // A client moving to the reloaded pool leaves the old one (see ConnectionPool.clientJoined).
            guard countedInPool, oldValue !== pool else { return }
            oldValue?.clientLeft()
            pool?.clientJoined()
        }
    }
    /// This client counts among its pool's clients (from login until it leaves).
    var countedInPool = false
    /// The client's last unnamed Parse (its payload after the empty name), kept to prepare it again on the server
    /// connection of a later transaction (ClientConnection+UnnamedStatement).
    var savedUnnamedParse: ByteBuffer?
    /// The saved unnamed statement calls `set_config` (ClientConnection+UnnamedStatement).
    var savedUnnamedSetsConfig = false
    /// The Query or Parse the plugins passed before a server was leased for it (ClientConnection+Plugins).
    var pluginsPassed: (id: UInt8, payload: ByteBuffer)?
    /// The Parse at the front of the inbox waits for the rest of its batch (read/write splitting).
    var awaitingRestOfUnit = false
    var poolMode: PoolMode = .transaction
    let key: BackendKeyData
    let connectedAt = NIODeadline.now()
    /// The client's address (SHOW CLIENTS), set when the handler is added, before the client is listed anywhere.
    private(set) var peer: SocketAddress?

    // Relay state
    var server: ServerConnection? {
        didSet {
            // Waits for an answer of the server this client had are over with it (lost, timed out, released).
            if server == nil {
                awaitingStatementOutcome = false
                awaitingResultShape = false
                heldStatement = nil
            }
        }
    }
    var waiting = false
    var waitTimer: Scheduled<Void>?
    var waitDeadline: NIODeadline?
    /// When the armed wait timer fires.
    var armedWaitDeadline: NIODeadline?
    var idleTransactionTimer: Scheduled<Void>?
    /// The user's `statement_timeout` for the request in flight (ClientConnection+QueryTimeout).
    var statementTimer: Scheduled<Void>?
    /// What the pooler owes an idle client without a server, answered at its next message (ClientConnection+Relay
    /// `dispatchIdle`): the idle-in-transaction timeout fired (25P03), or the server connection of its transaction
    /// or session was lost (this FATAL 08006; ClientConnection+Lease `serverClosed`).
    enum OwedAnswer { case idleTransactionTimeout, sessionLost(String) }
    var owedAnswer: OwedAnswer?
    /// After an error the pooler sent itself: drop messages up to the next Sync/Query, then ReadyForQuery.
    var discardUntilSync = false
    var scanner = FrameStreamScanner()
    /// The client's named prepared statements: its name -> server-side name and definition (transaction mode).
    var statements: [String: ClientStatement] = [:]
    /// Session mode with `automatic_sharding_key`: the texts of the statements the client prepared (the unnamed one
    /// under ""), so that a later Bind is checked against the session's shard (ClientConnection+AutomaticSharding).
    var sessionStatementTexts: [String: String] = [:]
    /// SQL-level `PREPARE` texts by statement name, replayed on the server an `EXECUTE` lands on.
    var sqlStatements: [String: String] = [:]
    /// A pooler-made error answered an extended message: drop the client's messages up to its Sync, which still
    /// goes to the server (whose ReadyForQuery ends the exchange in order).
    var skipToSync = false
    /// Named statements are renamed per server (transaction mode with a statement cache); set at login.
    var rewritesStatements = false
    /// PgCat's per-client routing choices (SET SERVER ROLE, SET PRIMARY READS).
    var routing = ClientRouting()
    /// The shard `automatic_sharding_key` found for the transaction being leased.
    var automaticShard: Int?
    /// The key of the transaction being leased is a `$n` whose Bind has not come (asyncpg: Parse, Describe, Flush):
    /// the Flush's answers end that server's part, and the Bind is routed on its own.
    var automaticShardAwaitsBind = false
    /// Binds the look-ahead of the lease decided; the relay checks the ones after them (`bindNamesAnotherShard`).
    var automaticBindsDecided = 0
    /// The request the lease was decided by starts with a Query (the relay's check of each Query skips it).
    var automaticQueryDecided = false
    /// The role of the transaction being leased for (re-asked after RESUME or a reload).
    var leaseRole: TargetRole?
    /// The affinity key of the current lease request (CPU inference), asked again by `leaseAgain`.
    var leaseAffinityKey: String?
    /// The inference lease in progress or held (ML routing).
    var inference: InferenceLease?
    /// When this client's last transaction on the primary ended (read-your-writes window).
    var lastPrimaryTransaction: NIODeadline?
    /// The current transaction went to the primary only because of `read_your_writes_window`.
    var primaryForReadYourWrites = false
    /// The current transaction is inference placed by `ml_routing.fallback` (not misplaced).
    var inferenceFallback = false
    /// Times the current lease was retried on another server after a connection failure.
    var leaseRetries = 0
    /// The relay stopped before a message about named statements until an earlier batch's outcome is known.
    var awaitingStatementOutcome = false
    /// A Bind waits for the pooler's own Describe of the server's copy of its statement (`holdsBindForResultShape`).
    var awaitingResultShape = false
    /// The server-side name of the statement that hold prepared afresh and described.
    var heldStatement: String?
    /// Set for the Bind's rewrite: the server-side name whose copy's shape the hold check knows (the client's, or
    /// to be compared), used as it is; and whether the Bind was held (its use counted then).
    var verifiedCopy: String?
    var heldForShape = false
    /// Some statement of the client's has a known result shape (Binds are checked only then).
    var knowsResultShapes = false
    /// The relay holds the client's messages until the server answered the pooler's query applying login settings.
    var awaitingSettingsReplay = false
    /// The server's ErrorResponse to that query, if it refused it.
    var settingsReplayError: ByteBuffer?
    /// Backpressure pauses in force (see channelWritabilityChanged).
    var serverReadsPaused = false
    var clientReadsPaused = false
    /// `client_login_timeout`, cancelled once logged in.
    var loginTimer: Scheduled<Void>?
    /// Shutting down: close this client as soon as it holds no server connection.
    var closeWhenIdle = false
    /// Transaction mode: the client ran something whose state outlives the transaction (LISTEN, advisory lock,
    /// temporary table, WITH HOLD cursor) and keeps its server connection until it disconnects.
    var pin: SessionPin? {
        didSet { reportedPin.withLockedValue { $0 = pin } }
    }
    /// The current extended-protocol batch, kept for one retry after `cached plan must not change result type`.
    var planRetry: PlanRetryRecording?

    /// Counters and state for SHOW CLIENTS (readable from any thread).
    let stats = ClientStats()
    /// application_name as the client set it (readable from any thread).
    let reportedApplicationName = NIOLockedValueBox("")
    /// The pin reason, readable from any thread (SHOW CLIENTS).
    let reportedPin = NIOLockedValueBox<SessionPin?>(nil)

    /// The password being checked came from auth_query (a failed login makes the pool ask again next time).
    var passwordFromAuthQuery = false
    /// The client completed an SSLRequest and talks through TLS (SHOW CLIENTS `tls`).
    var tlsActive = false
    /// The `tls-server-end-point` hash of the certificate this client's TLS session presented (SCRAM-SHA-256-PLUS).
    var tlsChannelBinding: [UInt8]?

    /// A statement running on every shard (`fan_out`); the client's next messages wait for its reply.
    var fanOut: FanOutRun?

    /// A session on the admin console (database `pgcat` or `pgbouncer`).
    var isAdmin = false

    var ownedServerState: ServerState { .active }

    /// Whether the server connection goes back to the pool when a transaction ends.
    var releasesAfterTransaction: Bool { poolMode == .transaction && pin == nil }

    init(runtime: PoolerRuntime, eventLoop: EventLoop, logger: Logger) {
        self.runtime = runtime
        self.eventLoop = eventLoop
        self.baseLogger = logger
        let general = runtime.general
        self.maxMessageSize = general.maxMessageSize
        self.idleTransactionTimeout = Int64(general.idleClientInTransactionTimeout)
        // One draw from the system's generator (a getrandom(2) call) for both halves: the secret must be
        // unpredictable, or another client could cancel this one's queries.
        var rng = SystemRandomNumberGenerator()
        let random = rng.next()
        self.key = BackendKeyData(processID: max(1, Int32(truncatingIfNeeded: random >> 33)),
                                  secretKey: Int32(truncatingIfNeeded: random))
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        peer = context.channel.remoteAddress
        let timeout = runtime.general.clientLoginTimeout
        if timeout > 0 {
            // Strong capture (no weak reference, see PoolerRuntime.CancelTarget): the timer is cancelled and dropped
            // at login or when the client leaves.
            loginTimer = eventLoop.scheduleTask(in: .milliseconds(Int64(timeout))) { [self] in
                loginTimedOut()
            }
        }
    }

    /// `client_login_timeout`: a client that connected but has not finished its startup and authentication.
    private func loginTimedOut() {
        loginTimer = nil
        switch phase {
        case .startup, .authenticating, .lookingUpPassword:
            logger.info("client login timed out")
            inbox = nil
            fatal(.invalidAuthorizationSpecification, "login timed out: the startup and authentication did not finish "
                  + "within client_login_timeout")
        case .awaitingParameters, .ready, .closed:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        directRead(unwrapInboundIn(data))
    }

    /// What the client sent (through the pipeline, or straight from the socket: `startDirectWrites`).
    func directRead(_ incoming: ByteBuffer) {
        if case .closed = phase { return }  // (lingering after a FATAL: see closeClientAfterMessage)
        if var pending = inbox {
            inbox = nil  // the only reference: appending does not copy what is already there (a large frame in
                         // many reads would be copied once per read)
            var incoming = incoming
            pending.writeBuffer(&incoming)
            inbox = pending
        } else {
            inbox = incoming
        }
        switch phase {
        case .startup, .authenticating:
            driveStartup()
        case .ready where isAdmin:
            driveAdmin()
        case .ready:
            cancelIdleTransactionTimer()
            drive()
        case .awaitingParameters, .lookingUpPassword, .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        directReadComplete()
    }

    func directReadComplete() {
        server?.flush()
        flushIfNeeded()
    }

    func channelInactive(context: ChannelHandlerContext) {
        writer.stop()
        clientGone()
        context.fireChannelInactive()
    }

    /// Backpressure both ways: a slow client pauses reads from its server, a slow server pauses reads from the client.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritable = context.channel.isWritable
        if let server {
            serverReadsPaused = !clientWritable
            server.setReadEnabled(clientWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    func serverWritabilityChanged(_ server: ServerConnection, writable: Bool) {
        guard server === self.server, let context else { return }
        setClientReadEnabled(writable, context: context)
    }

    func setClientReadEnabled(_ enabled: Bool, context: ChannelHandlerContext) {
        clientReadsPaused = !enabled
        context.channel.setOption(ChannelOptions.autoRead, value: enabled).whenFailure { _ in }
        if enabled { context.read() }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if logsDebug { logger.debug("client connection error", metadata: ["error": "\(error)"]) }
        context.close(promise: nil)
    }

    // MARK: writing to the client

    func write(_ buffer: ByteBuffer) {
        if writer.queueIfFirstDirect(buffer) { return }
        guard let context else { return }
        writer.write(buffer, context: context)
    }

    func flushIfNeeded() {
        guard writer.needsFlush, let context else { return }
        writer.flush(context: context)
    }

    /// Without TLS, relay writes go straight to the socket from now on (see DirectSocketWriter), and reads come
    /// straight from it where the transport allows (`ServerConnector.startDirectIO`).
    func startDirectWrites() {
        guard !tlsActive, let context,
              let descriptor = runtime.connector.startDirectIO(of: context.channel, readsTo: self)
        else { return }
        writer.start(descriptor: descriptor, context: context)
    }

    func allocate(_ capacity: Int = 64) -> ByteBuffer {
        context?.channel.allocator.buffer(capacity: capacity) ?? ByteBufferAllocator().buffer(capacity: capacity)
    }

    /// ErrorResponse with severity ERROR; the caller decides about ReadyForQuery.
    func sendError(_ state: SQLState, _ message: String) {
        // An error the pooler raises inside a transaction whose BEGIN it deferred fails that transaction, as an
        // error on a server would (before, the client was told it was idle and its next statements autocommitted).
        if deferredBegin != nil { failDeferredTransaction() }
        var buffer = allocate(128)
        MessageEncoder.errorResponse(severity: .error, state: state, message: message, into: &buffer)
        write(buffer)
    }

    func sendReady(_ status: TransactionStatus? = nil) {
        var buffer = allocate(6)
        sendReady(status, into: &buffer)
        write(buffer)
    }

    /// ReadyForQuery from a client without a server: idle, or in a transaction while a BEGIN it sent waits.
    func sendReady(_ status: TransactionStatus? = nil, into buffer: inout ByteBuffer) {
        let status = status ?? (deferredTransactionFailed ? .failed : deferredBegin != nil ? .inTransaction : .idle)
        MessageEncoder.readyForQuery(status, into: &buffer)
    }

    /// Sends FATAL and closes the connection.
    func fatal(_ state: SQLState, _ message: String) {
        if logsDebug { logger.debug("closing client", metadata: ["sqlstate": "\(state)", "reason": "\(message)"]) }
        var buffer = allocate(128)
        MessageEncoder.errorResponse(severity: .fatal, state: state, message: message, into: &buffer)
        write(buffer)
        flushIfNeeded()
        closeClientAfterMessage()
    }

    /// How long a client that was sent a FATAL may keep its socket open: until it closes, or this much later (at
    /// most `PoolerRuntime.maxLingeringClients` at a time).
    static let fatalLinger: TimeAmount = .seconds(2)

    /// Ends the session after a FATAL the way a reader of it needs. A plain close would answer anything the client
    /// sends afterwards (or already sent, unread) with a reset, and some systems drop data the client has received
    /// but not read yet when a reset arrives: the FATAL itself. So the output is ended (FIN after the FATAL), what
    /// the client still sends is read and dropped, and the socket closes when the client closes it, or after
    /// `fatalLinger`. Everything the session held is released at once.
    func closeClientAfterMessage() {
        guard let context else { return }
        let connector = runtime.connector
        let lingering = runtime.lingeringClients
        guard !tlsActive, connector.shutsDownOutput, lingering.load < PoolerRuntime.maxLingeringClients else {
            closeClient()
            return
        }
        flushIfNeeded()
        if clientReadsPaused { setClientReadEnabled(true, context: context) }
        let channel = context.channel
        // Counted and bounded from now, also while the FATAL waits behind output the client does not read.
        lingering.add()
        channel.closeFuture.whenComplete { _ in lingering.add(-1) }
        channel.eventLoop.scheduleTask(in: Self.fatalLinger) { channel.close(promise: nil) }
        // An empty write behind everything NIO holds: once it completes, the FATAL is all in the kernel.
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: written)
        writer.stop()
        clientGone()
        written.futureResult.whenComplete { result in
            // (on the channel's loop, still open: the descriptor is still this channel's)
            if case .success = result, channel.isActive, connector.shutdownOutput(of: channel) { return }
            channel.close(promise: nil)
        }
    }

    func closeClient() {
        guard let context else { return }
        writer.stop()
        context.close(promise: nil)
        clientGone()
    }

    /// Releases everything the client held; safe to call more than once.
    private func clientGone() {
        if case .closed = phase { return }
        let wasReady: Bool
        if case .ready = phase { wasReady = true } else { wasReady = false }
        phase = .closed
        authMachine = nil
        inbox = nil
        loginTimer?.cancel()
        loginTimer = nil
        waitTimer?.cancel()
        waitTimer = nil
        cancelIdleTransactionTimer()
        cancelStatementTimer()
        if waiting, let pool {
            waiting = false
            _ = pool.cancelWait(self)  // if a lease is already on its way, leaseGranted hands it back
        }
        if server == nil { abandonInferenceWait() }
        fanOut?.abandon()
        fanOut = nil
        if let server {
            self.server = nil
            returnServer(server, clientLeft: true)
        }
        if countedInPool {
            countedInPool = false
            pool?.clientLeft()
        }
        if admitted {
            admitted = false
            runtime.clientLeft(database: database, user: user, admittedForUser: admittedForUser)
            runtime.unregisterCancelKey(key)
            if wasReady && runtime.general.logClientDisconnections {
                logger.info("client disconnected", metadata: [
                    "session_seconds": "\((NIODeadline.now() - connectedAt).nanoseconds / 1_000_000_000)"])
            }
        }
        context = nil
    }

    /// Graceful shutdown: leave now if idle, otherwise when the current transaction ends.
    func shutdownRequested() {
        closeWhenIdle = true
        guard case .ready = phase, fanOut == nil else { return }  // (a fan-out is a request in progress)
        if waiting {
            // A request waiting for a server goes on when it gets one; but PAUSE holds it until RESUME, which a
            // shutdown should not wait for: it has not started, so the client is told now.
            guard inference == nil, pool?.isPaused == true, withdrawWait() else { return }
        }
        if let server {
            // Pinned or in session mode, a client holds its server between transactions: idle, it can go now.
            guard server.isCleanlyIdle, inbox == nil, !scanner.isMidFrame else { return }
        }
        fatal(.adminShutdown, "terminating connection due to administrator command")
    }

    /// A reload replaced the pool this client waits on: wait on (or lease from) the new one instead.
    func poolReplaced() {
        guard waiting else { return }
        guard let fresh = runtime.pool(database: database, user: user) else {
            // The reload removed this pool: nothing will answer the wait.
            waiting = false
            stats.stopWaiting(now: eventLoop.now)
            abandonInferenceWait()
            if case .awaitingParameters = phase {
                fatal(.invalidCatalogName, "the pool \(database)/\(user) was removed by a reload")
            } else {
                stats.set(.idle)
                failRequest(.connectionFailure, "the pool \(database)/\(user) was removed by a reload")
            }
            return
        }
        pool = fresh
        poolMode = fresh.settings.poolMode
        rewritesStatements = poolMode == .transaction && fresh.statementCacheSize > 0
        leaseAgain()
    }

    /// The pool stopped holding this waiter (RESUME, or a reload moved it): ask again, the same way as before
    /// (an inference statement through the inference pools, anything else by its role).
    func leaseAgain() {
        guard waiting, let pool else { return }
        guard let lease = inference else {
            let loggingIn: Bool
            if case .awaitingParameters = phase { loggingIn = true } else { loggingIn = false }
            // The same request as the first one (requestServer): role, affinity and shard.
            if case .leased(let server) = pool.lease(for: self, role: leaseRole, bypassPause: loggingIn,
                                                 affinityKey: leaseAffinityKey, shard: leaseShard(in: pool)) {
                leaseGranted(server)
            }
            return
        }
        if let queue = lease.queuedIn, queue !== pool {  // moved by a reload: counted in the new pool now
            queue.mlStats.queue(model: lease.label, delta: -1)
            queue.inferenceWaitEnded(self)
            inference?.queuedIn = nil
        }
        switch pool.leaseInference(for: self, model: lease.model) {
        case .leased(let server, let spilled):
            inference?.spilled = spilled
            leaseGranted(server)
        case .waiting:
            if inference?.queuedIn == nil {
                inference?.queuedIn = pool
                pool.mlStats.queue(model: lease.label, delta: 1)
            }
        case .queueFull, .noServer:
            // No place any more (e.g. the reload removed the tagged servers): fail like a full queue.
            waiting = false
            stats.stopWaiting(now: eventLoop.now)
            stats.set(.idle)
            abandonInferenceWait()
            failRequest(.configurationLimitExceeded, "no inference connection available for model "
                        + "\(lease.model ?? "(unknown model)") after the pool changed")
        }
    }

    /// A CancelRequest named this client: pass it to the server it is using, if any. Returns what completes once
    /// the servers have handled it (nil: nothing was sent).
    func forwardCancel() -> EventLoopFuture<Void>? {
        if let fanOut {
            return fanOut.cancel()
        }
        if waiting, case .ready = phase {
            cancelWaitingRequest()  // nothing runs yet: the request itself is cancelled
            return nil
        }
        guard let server, let pool, let sent = server.sendCancel(on: eventLoop) else { return nil }
        pool.cancelsInFlight.add()
        sent.whenComplete { _ in pool.cancelsInFlight.add(-1) }
        return sent
    }
}
