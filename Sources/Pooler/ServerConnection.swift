/// One connection to a PostgreSQL server: logs in, then relays bytes to whoever holds its lease.
///
/// Threading: channel events run on `eventLoop`. While leased, the relay fields (`tracker`, `status`, ...)
/// belong to the owner's event loop; the pool's lock orders the hand-over between owners.
import Auth
import Logging
import NIOCore
import Atomics
import NIOConcurrencyHelpers
import PostgresWire

public struct ServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: String
    public var role: String
    public var shard: Int
    public var index: Int

    public init(host: String, port: Int, database: String, role: String, shard: Int, index: Int) {
        self.host = host
        self.port = port
        self.database = database
        self.role = role
        self.shard = shard
        self.index = index
    }

    public var description: String { "\(host):\(port)/\(database)" }
}

public final class ServerConnection: ChannelInboundHandler, DirectReadReceiver, Hashable, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public let id: Int
    public let address: ServerAddress
    /// Index of the pool slot (server address) this connection belongs to.
    let slotIndex: Int
    public let eventLoop: EventLoop
    let logger: Logger
    private var context: ChannelHandlerContext?
    private var startup: ServerStartupStateMachine?
    private var startupBuffer: ByteBuffer?
    private let ready: EventLoopPromise<Void>
    private var owner: ServerOwner?
    /// Writes to the server (it knows whether anything awaits a flush), straight to the socket after the login
    /// (plaintext only).
    private let writer = DirectSocketWriter()
    /// Called once, on `eventLoop`, when the connection is gone after a successful startup.
    var onClose: (@Sendable (ServerConnection) -> Void)?

    // Relay state, owned by the lease holder's event loop.
    /// Replies the server still owes, in order (see ResponseTracker).
    var tracker = ResponseTracker()
    /// Pooler-named prepared statements this connection holds (transaction mode).
    var statements: ServerStatementCache
    /// SQL-level statement names prepared on this connection (by its current client; reset before the next one).
    var sqlPrepared: Set<String> = []
    /// Pooler-named statements the server still holds but that must be closed before they are prepared again
    /// (their plan went stale, or the Close evicting them was skipped after an error). Not in `statements`.
    var staleStatements: Set<String> = []
    /// An unnamed Parse went to this connection in the current unit (up to its Sync or Query), so the unnamed
    /// statement is the lease holder's; false at every lease's and unit's start. See ClientConnection+UnnamedStatement.
    var unnamedParsedInUnit = false
    /// A Bind or Execute was sent since the last Sync or Query (a portal may be open).
    var boundInUnit = false
    /// Extended-protocol messages sent since the last Sync (the server holds unsynced state).
    var unsynced = false
    var status: TransactionStatus = .idle
    var inCopy = false
    /// A client ran SET (or RESET) here: `RESET ALL` before the next client (kept across leases until done).
    var dirtySettings = false
    /// A client ran SQL-level PREPARE here: `DEALLOCATE ALL` before the next client.
    var dirtyPrepared = false
    var isDirty: Bool { dirtySettings || dirtyPrepared }
    /// The login settings (`SessionSetting`) the pooler applied here for the client that last used it.
    var appliedSettings: [SessionSetting] = []
    /// False when a client's SET or RESET may have changed their values and no RESET ALL followed
    /// (`cleanup_server_connections: false`): the next client's are all set again.
    var appliedSettingsKnown = true

    /// The session was reset (RESET ALL, DISCARD ALL, the pooler's RESETs): no login settings are applied here.
    func forgetAppliedSettings() {
        appliedSettings = []
        appliedSettingsKnown = true
    }

    /// A CommandComplete tag (`length` bytes with its NUL, at `index`) from a statement run for a client: `SET`/
    /// `RESET` and `PREPARE` leave session state the next client must not inherit; `DISCARD ALL` removed it all.
    /// Returns true when the tag says the server dropped all its prepared statements (DEALLOCATE ALL, DISCARD ALL).
    @discardableResult
    func noteCommandTag(_ buffer: ByteBuffer, at index: Int, length: Int) -> Bool {
        switch length {
        case 4 where buffer.getInteger(at: index, as: UInt32.self) == 0x5345_5400:  // "SET\0"
            dirtySettings = true
        case 6 where buffer.getString(at: index, length: 5) == "RESET":
            dirtySettings = true
        case 8 where buffer.getString(at: index, length: 7) == "PREPARE":
            dirtyPrepared = true
        case 12 where buffer.getString(at: index, length: 11) == "DISCARD ALL":
            forgetAppliedSettings()  // the next lease applies the login settings again
            return true
        case 15 where buffer.getString(at: index, length: 14) == "DEALLOCATE ALL":
            return true
        default:
            break
        }
        return false
    }
    /// DEALLOCATE ALL / DISCARD ALL commands the pooler recognised in the client's text and already accounted for
    /// (their tags are still to come); a tag beyond these is a drop it did not see coming.
    var expectedStatementDrops = 0
    var isBroken = false
    /// The FATAL the server sent before closing the connection (its message and SQLSTATE), told to the client with
    /// the connection's loss.
    var fatalReason: String?
    var scanner = FrameStreamScanner()
    /// When the current request (up to its ReadyForQuery) and transaction began, for query and transaction times.
    var requestStart: NIODeadline?
    var transactionStart: NIODeadline?
    /// The client sent a Flush with replies owed and no Sync after them: the server is expected to answer now, so
    /// timeouts count the wait (until those replies are in).
    var awaitsFlushedReplies = false
    /// The server owes answers it should be sending now (to a Sync, Query or Flush), as timeouts see it.
    var awaitsReplies: Bool { tracker.pendingSyncPoints > 0 || awaitsFlushedReplies }

    /// All a Flush asked for is answered (by the server or the pooler itself): the wait is over, and the client's
    /// next message starts the next one (`requestStart`).
    func endFlushedWaitIfAnswered() {
        guard awaitsFlushedReplies, tracker.isEmpty else { return }
        awaitsFlushedReplies = false
        requestStart = nil
    }

    /// A Sync, Query or FunctionCall ended the unit (its unnamed statement and portals are the server's business
    /// again).
    func unitEnded() {
        unnamedParsedInUnit = false
        boundInUnit = false
    }
    /// Idle in its pool longer than `healthcheck_delay` (the pool's sweep sets it, under the pool's lock): checked
    /// with a query before its next lease (`ConnectionPool+CheckoutCheck`).
    var checkBeforeUse = false
    /// CancelRequests sent for this backend and not done yet: the pool holds the connection back meanwhile.
    let cancelsInFlight = CancelsInFlight()
    /// When the last ReadyForQuery of the current lease reached the client (uptime nanoseconds; 0 at the lease's
    /// start): the relay's release passes it to the pool as the release time instead of reading the clock again.
    var readyAt: UInt64 = 0

    /// The pooler closed it (not the server or the network); set from any thread before the close.
    var closedByPooler: Bool {
        get { closedByPoolerFlag.load(ordering: .relaxed) }
        set { closedByPoolerFlag.store(newValue, ordering: .relaxed) }
    }
    private let closedByPoolerFlag = ManagedAtomic(false)
    /// Models this backend has run (pgml keeps them loaded per backend); read under the pool's lock when leasing.
    private let loadedModels = NIOLockedValueBox<Set<String>>([])
    func hasLoaded(_ model: String) -> Bool {
        loadedModels.withLockedValue { $0.contains(model) } || reservedModels.withLockedValue { $0.contains(model) }
    }
    /// Marks a model as being loaded by the statement just leased here (so `max_connections_per_server` counts it
    /// at once); `markLoaded` then still reports the cold start.
    func reserve(_ model: String) { reservedModels.withLockedValue { _ = $0.insert(model) } }
    private let reservedModels = NIOLockedValueBox<Set<String>>([])

    /// Records a model run here; true if it was new to this backend (a cold start).
    @discardableResult
    func markLoaded(_ model: String) -> Bool { loadedModels.withLockedValue { $0.insert(model).inserted } }
    /// The pool's RECONNECT epoch when this connection was opened.
    var epoch = 0
    /// Counters and state for the admin console and metrics (readable from any thread).
    let stats = ServerStats()
    /// The application_name of the client that used it last (SHOW SERVERS, as PgBouncer).
    let lastApplicationName = NIOLockedValueBox("")
    /// What `lastApplicationName` was last set to, read by the lease holder only: most leases change nothing and
    /// take no lock.
    private var applicationNameSet = ""

    func noteApplicationName(_ name: String) {
        guard name != applicationNameSet else { return }
        applicationNameSet = name
        lastApplicationName.withLockedValue { $0 = name }
    }

    /// Set once at startup.
    /// The server's current reported parameters (startup, then ParameterStatus while leased).
    public internal(set) var parameters: [String: String] = [:] { didSet { matchedFingerprint = nil } }
    /// The server reads this connection's statements in an encoding that is neither UTF-8 nor SQL_ASCII (a LATIN1
    /// client's replay set it) and converts them: the pooler's own literals must spell other characters than ASCII
    /// as escapes. Not on a SQL_ASCII database, which converts nothing and refuses such escapes.
    var needsASCIILiterals: Bool {
        func normalized(_ name: String) -> String? {
            parameters[name]?.uppercased().filter { $0 != "_" && $0 != "-" }
        }
        guard let encoding = normalized("client_encoding"), normalized("server_encoding") != "SQLASCII" else {
            return false
        }
        return encoding != "UTF8" && encoding != "UNICODE" && encoding != "SQLASCII"
    }
    /// The `ParameterFingerprint` of the last client parameters found to need no replay here (nil once
    /// `parameters` changes).
    var matchedFingerprint: Int?
    public private(set) var backendKey: BackendKeyData?
    public let createdAt: NIODeadline

    let connector: ServerConnector

    init(id: Int, address: ServerAddress, slotIndex: Int, credentials: ServerCredentials, eventLoop: EventLoop,
         keyCache: SCRAMKeyCache?, connector: ServerConnector, statementCacheSize: Int, logger: Logger) {
        self.statements = ServerStatementCache(capacity: statementCacheSize)
        self.connector = connector
        self.id = id
        self.address = address
        self.slotIndex = slotIndex
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "server_id"] = "\(id)"
        logger[metadataKey: "server"] = "\(address)"
        self.logger = logger
        self.startup = ServerStartupStateMachine(credentials: credentials, keyCache: keyCache)
        self.ready = eventLoop.makePromise()
        self.createdAt = .now()
    }

    private var startupCompleted = false

    /// Completes the startup promise once (a failed connect, a failed login and a close may all report).
    private func completeStartup(_ result: Result<Void, Error>) {
        guard !startupCompleted else { return }
        startupCompleted = true
        ready.completeWith(result)
    }

    /// The TCP connection could not be made: the handler never became active, so fail the startup here.
    func connectFailed(_ error: Error) {
        if eventLoop.inEventLoop {
            startup = nil
            completeStartup(.failure(ServerStartupError(reason: "could not connect: \(error)")))
        } else {
            eventLoop.execute { self.connectFailed(error) }
        }
    }

    /// Opening took longer than connect_timeout (a server that accepts TCP but never finishes the login).
    func openingTimedOut(after timeout: TimeAmount) {
        guard eventLoop.inEventLoop else { return eventLoop.execute { self.openingTimedOut(after: timeout) } }
        guard !startupCompleted else { return }
        startup = nil
        startupBuffer = nil
        completeStartup(.failure(ServerStartupError(
            reason: "connecting and logging in took longer than connect_timeout (\(timeout.nanoseconds / 1_000_000) ms)")))
        close()
    }

    /// Succeeds when the server sent its first ReadyForQuery.
    public var startupFuture: EventLoopFuture<Void> { ready.futureResult }

    public static func == (lhs: ServerConnection, rhs: ServerConnection) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { begin(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        context.fireChannelActive()
    }

    private func begin(context: ChannelHandlerContext) {
        guard var machine = startup, startupBuffer == nil else { return }
        startupBuffer = context.channel.allocator.buffer(capacity: 256)
        if case .send(let buffer) = machine.start() {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        startup = machine
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if startup != nil {
            stats.bytesReceived.add(buffer.readableBytes)
            continueStartup(context: context, with: buffer)
            return
        }
        directRead(buffer)
    }

    /// What the server sent after startup (through the pipeline, or straight from the socket once startup is done:
    /// `ServerConnector.startDirectIO`).
    public func directRead(_ buffer: ByteBuffer) {
        stats.bytesReceived.add(buffer.readableBytes)
        guard let owner else {
            // Notices while idle in the pool carry nothing a client needs. Anything else (a FATAL as the server
            // shuts down, part of a frame) must not meet the next owner, so the connection is closed as if by the
            // server (no Terminate, not `closedByPooler`): the pool handles it as a server that went away.
            if Self.wholeNoticesLength(buffer) < buffer.readableBytes {
                isBroken = true
                context?.close(promise: nil)
            }
            return
        }
        if owner.eventLoop === eventLoop {
            owner.serverRead(buffer, from: self)
        } else {
            owner.eventLoop.execute {
                owner.serverRead(buffer, from: self)
                owner.serverReadComplete(from: self)
            }
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        directReadComplete()
    }

    public func directReadComplete() {
        if let owner, owner.eventLoop === eventLoop { owner.serverReadComplete(from: self) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish(reason: "server closed the connection")
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("server connection error", metadata: ["error": "\(error)"])
        finish(reason: "server connection error: \(error)")
        context.close(promise: nil)
    }

    private func continueStartup(context: ChannelHandlerContext, with incoming: ByteBuffer) {
        guard startup != nil, var buffer = startupBuffer else { return }  // the login already ended (failed)
        startupBuffer = nil  // the only reference while appending
        var incoming = incoming
        buffer.writeBuffer(&incoming)
        startupBuffer = buffer
        guard !derivingKeys else { return }
        do {
            // A reply written here can end the login at once (TLS may close the channel inside the write, and
            // `finish` clears `startup`): check before each frame.
            while startup != nil, startupBuffer != nil, let frame = try Frame.read(from: &startupBuffer!) {
                if !handleStartup(frame, context: context) { return }
            }
        } catch {
            failStartup("\(error)", context: context)
        }
    }

    private var derivingKeys = false

    /// Feeds one startup frame to the machine; false when processing must pause (done, failed or deriving keys).
    private func handleStartup(_ frame: Frame, context: ChannelHandlerContext) -> Bool {
        guard startup != nil else { return false }  // ended meanwhile (failed, closed, timed out)
        switch startup!.receive(frame) {
        case .wait:
            return true
        case .send(let buffer):
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            return true
        case .deriveKeysOffLoop(let frame):
            derivingKeys = true
            let machine = startup!
            connector.runBlocking(on: eventLoop) { machine.precomputeKeys(for: frame) }.whenComplete { _ in
                self.derivingKeys = false
                guard let context = self.context, self.startup != nil else { return }
                if self.handleStartup(frame, context: context) {
                    self.continueStartup(context: context, with: ByteBuffer())
                }
            }
            return false
        case .ready(let parameters, let key):
            if let rest = startupBuffer, Self.wholeNoticesLength(rest) < rest.readableBytes {
                // More than notices after the first ReadyForQuery (a FATAL as the server shuts down): the
                // connection goes, as one that receives them idle in the pool does.
                failStartup("the server sent \(rest.readableBytes) unexpected bytes after its first ReadyForQuery",
                            context: context)
                return false
            }
            self.parameters = parameters
            self.backendKey = key
            stats.stateValue.store(ServerState.idle.rawValue)
            startup = nil
            startupBuffer = nil
            if let descriptor = connector.startDirectIO(of: context.channel, readsTo: self) {
                writer.start(descriptor: descriptor, context: context)
            }
            completeStartup(.success(()))
            return false
        case .fail(let reason):
            failStartup(reason, context: context)
            return false
        }
    }

    private func failStartup(_ reason: String, context: ChannelHandlerContext) {
        startup = nil
        startupBuffer = nil
        completeStartup(.failure(ServerStartupError(reason: reason)))
        context.close(promise: nil)
    }

    private func finish(reason: String) {
        writer.stop()
        guard context != nil else { return }
        context = nil
        if startup != nil {
            startup = nil
            startupBuffer = nil
            completeStartup(.failure(ServerStartupError(reason: reason)))
            return
        }
        isBroken = true
        for mirror in mirrors { mirror.close() }
        mirrors.removeAll()
        if let owner {
            self.owner = nil
            if owner.eventLoop === eventLoop {
                owner.serverClosed(self, reason: reason)
            } else {
                owner.eventLoop.execute { owner.serverClosed(self, reason: reason) }
            }
        }
        onClose?(self)
        onClose = nil
    }

    // MARK: used by owners

    /// Attaches the lease holder. Runs on this connection's loop, in submission order.
    func attach(owner newOwner: ServerOwner) {
        if eventLoop.inEventLoop {
            owner = newOwner
            stats.stateValue.store(newOwner.ownedServerState.rawValue)
            if context == nil {
                // Died while in the pool: tell the new owner at once.
                newOwner.eventLoop.execute { newOwner.serverClosed(self, reason: "server closed the connection") }
            }
        } else {
            eventLoop.execute { self.attach(owner: newOwner) }
        }
    }

    /// Detaches `oldOwner` if it still holds the lease. Conditional, because a detach queued from another loop
    /// may run after the next holder attached itself directly on this loop. What the owner sent goes out first
    /// (the relay may give a server up right after relaying a Flush, or on the client's Terminate).
    func detach(owner oldOwner: ServerOwner) {
        if eventLoop.inEventLoop {
            flush()
            if owner === oldOwner {
                owner = nil
                stats.stateValue.store(ServerState.idle.rawValue)
            }
        } else {
            eventLoop.execute { self.detach(owner: oldOwner) }
        }
    }

    /// Sends bytes to the server; flushed by `flush()` (same loop) or immediately (other loop).
    func send(_ buffer: ByteBuffer) {
        stats.bytesSent.add(buffer.readableBytes)
        if eventLoop.inEventLoop {
            if !writer.queueIfFirstDirect(buffer) {
                guard let context else { return }
                writer.write(buffer, context: context)
            }
            if !mirrors.isEmpty { copyToMirrors(buffer) }
        } else {
            eventLoop.execute {
                guard let context = self.context else { return }
                self.writer.write(buffer, context: context)
                if !self.mirrors.isEmpty { self.copyToMirrors(buffer) }
                self.flush()
            }
        }
    }

    /// Backpressure: stop (or resume) reading from the server while the client cannot take more bytes.
    func setReadEnabled(_ enabled: Bool) {
        if eventLoop.inEventLoop {
            guard let context, context.channel.isActive else { return }
            context.channel.setOption(ChannelOptions.autoRead, value: enabled).whenFailure { _ in }
            if enabled { context.read() }
        } else {
            eventLoop.execute { self.setReadEnabled(enabled) }
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        if let owner = owner as? ClientConnection {
            owner.eventLoop.execute { owner.serverWritabilityChanged(self, writable: writable) }
        }
        context.fireChannelWritabilityChanged()
    }

    func flush() {
        guard writer.needsFlush || !mirrors.isEmpty else { return }
        if eventLoop.inEventLoop, let context {
            writer.flush(context: context)
            for mirror in mirrors { mirror.flush() }
        }
    }

    // MARK: mirrors

    /// Mirror connections (`mirrors` of this server): they get a copy of every byte sent here and their replies
    /// are dropped. Best effort: a mirror that cannot keep up loses the copy, one that fails is dropped; the main
    /// path never waits for them. Used on this connection's event loop only (mirrors live on the same loop).
    private(set) var mirrors: [ServerConnection] = []

    func addMirror(_ mirror: ServerConnection) {
        guard eventLoop.inEventLoop else { return eventLoop.execute { self.addMirror(mirror) } }
        guard context != nil else { mirror.close(); return }
        mirrors.append(mirror)
        mirror.attach(owner: MirrorSink(eventLoop: eventLoop))
        mirror.onClose = { [weak self] closed in
            guard let self else { return }
            self.eventLoop.execute { self.mirrors.removeAll { $0 === closed } }
        }
    }

    private func copyToMirrors(_ buffer: ByteBuffer) {
        for mirror in mirrors where mirror.canTakeCopy {
            mirror.send(buffer)
        }
    }

    /// A mirror takes a copy only while its socket keeps up (never buffering without bound).
    private var canTakeCopy: Bool { context?.channel.isWritable ?? false }

    /// Closes the connection politely (Terminate, then close).
    public func close() {
        closedByPooler = true
        if eventLoop.inEventLoop {
            for mirror in mirrors { mirror.close() }
            mirrors.removeAll()
        }
        if eventLoop.inEventLoop {
            guard let context else { return }
            var buffer = context.channel.allocator.buffer(capacity: 5)
            MessageEncoder.terminate(into: &buffer)
            writer.write(buffer, context: context)
            writer.flush(context: context)
            writer.stop()
            context.close(promise: nil)
        } else {
            eventLoop.execute { self.close() }
        }
    }

    /// DISCARD ALL or DEALLOCATE ALL ran: the server holds no prepared statements.
    func forgetAllStatements() {
        statements.removeAll()
        sqlPrepared.removeAll()
        staleStatements.removeAll()
    }

    /// The server dropped (some of) the statements cached for it: they are closed before they are prepared again
    /// (harmless for those it no longer has).
    func lostCachedStatements() {
        for name in statements.names { staleStatements.insert(name) }
        statements.removeAll()
        stats.prepareCacheSize.store(0)
    }

    /// Relay state back to "idle, nothing in flight" for the next lease.
    func resetRelayState() {
        tracker.reset()
        requestStart = nil
        transactionStart = nil
        awaitsFlushedReplies = false
        readyAt = 0
        unsynced = false
        fatalReason = nil
        inCopy = false
        // (Here, on the new holder's loop before it sends anything, not in `attach`, which may run later on this
        // connection's own loop.)
        unitEnded()
        scanner.reset()
    }

    /// How many bytes from the reader index are whole NoticeResponse or NotificationResponse frames: what a server
    /// may send unasked between transactions and a client can take at any time.
    static func wholeNoticesLength(_ buffer: ByteBuffer) -> Int {
        var index = buffer.readerIndex
        while let header = FrameHeader.peek(buffer, at: index), header.length >= 4,
              header.id == BackendID.noticeResponse || header.id == BackendID.notificationResponse,
              buffer.writerIndex - index >= header.frameSize {
            index += header.frameSize
        }
        return index - buffer.readerIndex
    }

    /// Whether the connection can go back to the pool as it is.
    var isCleanlyIdle: Bool {
        !isBroken && tracker.isEmpty && !tracker.serverSkipping && !unsynced && status == .idle && !inCopy
            && !scanner.isMidFrame
    }
}

public struct ServerStartupError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}
