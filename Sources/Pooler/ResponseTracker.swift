/// What a server still owes its client, in order: one entry per request sent (Parse, Bind, Describe, Execute,
/// Close, Sync, Query, FunctionCall), plus answers the pooler gives itself at a given point in that order, and
/// replies to messages the pooler injected, which the client must not see.
///
/// It follows PostgreSQL's rules: after an error in an extended-protocol message the server skips every message up
/// to the next Sync; during COPY FROM it ignores Sync and Flush; a Query, Sync or FunctionCall ends with
/// ReadyForQuery. Pure: the relay feeds it message identifiers and carries out what it returns.
import NIOCore
import PostgresWire

struct ResponseTracker {
    enum Entry: Equatable {
        /// A Parse; `statement` is the server-side name when the pooler named it, `client` the client's name for it
        /// (both forgotten if the Parse fails or is skipped).
        case parse(statement: String?, client: String? = nil)
        /// A Bind or statement Describe; `statement` is the server-side name when it is a pooler-named statement,
        /// `client` the client's name the Describe was for (whose result shape its answer is).
        case bind(statement: String?)
        case describeStatement(statement: String?, client: String? = nil)
        case describePortal, execute, close
        case sync, query, functionCall
        /// A reply the pooler sends itself when this point is reached (e.g. ParseComplete for a Parse the server
        /// already had). Dropped if an earlier error makes the server skip to Sync, as Postgres would.
        case synthetic(ByteBuffer)
        /// A reply the pooler sends itself for a client's Parse or Close of a named statement, having already
        /// updated the client's names: if the server skips to Sync before this point, `undo` reverts that.
        case syntheticStatement(ByteBuffer, undo: StatementUndo)
        /// A ReadyForQuery the pooler sends itself (after answering a Query locally), with the server's status.
        case syntheticReady
        /// A message the pooler injected (e.g. re-preparing a statement): its reply is not forwarded.
        case injected(Injected)

        /// `query`: the pooler's own simple query (parameter replay); its whole reply, ReadyForQuery included, is
        /// dropped. `sync`: the pooler's own Sync, ending the client's unit early; its ReadyForQuery is dropped.
        /// `refusal`: a Parse meant to fail, so that the server skips to the client's Sync and rolls back what the
        /// unit did (the pooler refused a message of it); its error is dropped. `restore`: the pooler's own simple
        /// query setting the client's login values again after its RESET; dropped like `query`, except that the
        /// ParameterStatus it causes reach the client (as PostgreSQL's RESET would report them), and so do
        /// notifications that arrive meanwhile. `describe`: the pooler's own Describe of a statement it prepared
        /// again, to learn its result shape before the client's Bind goes on (see `ResultShape`).
        enum Injected: Equatable {
            case parse(statement: String), close(statement: String), describe(statement: String)
            case query, sync, refusal, restore
        }
    }

    /// How to revert a client's statement-name change the pooler answered itself, when Postgres would have skipped
    /// the message.
    enum StatementUndo: Equatable {
        /// A Parse answered from the server's copy: the name was never created.
        case forget(client: String)
        /// A Close answered by the pooler: the name was never closed.
        case restore(client: String, statement: ClientStatement)
        /// A Parse sent to the server failed or was skipped: the name was never created.
        case forgetIfMapped(client: String, statement: String)
    }

    enum Disposition: Equatable {
        /// Send the frame to the client.
        case forward
        /// The frame answers an injected message: drop it.
        case drop
    }

    /// What is owed, in order, as plain tags: copying, reading and removing them costs nothing. The few entries
    /// that carry something (a pooler-named statement, a reply of the pooler's own) keep it in `payloads`. With the
    /// enum itself in the queue, every append, read and removal went through its value witnesses (it has string and
    /// buffer payloads): ~0.2 µs of an extended-protocol transaction's five entries.
    private var slots: [Slot] = []
    /// The entries with payloads, indexed by their slot; emptied with the queue.
    private var payloads: [Entry] = []
    private var head = 0
    /// An extended-protocol message failed and the client has not sent the Sync that ends it yet: the server
    /// ignores everything until that Sync.
    private(set) var serverSkipping = false
    /// The server is in COPY FROM: it ignores Sync and Flush until the client's CopyDone or CopyFail.
    private(set) var copyIn = false
    /// Sync points (Sync, Query, FunctionCall) not yet answered with ReadyForQuery.
    private(set) var pendingSyncPoints = 0
    /// The client's own among them (Sync, Query, FunctionCall): each is owed a ReadyForQuery.
    private(set) var pendingClientSyncPoints = 0
    /// An error made the server skip to a Sync of the pooler's own (`Injected.sync`): the client's messages up to
    /// its own Sync must be skipped too (taken by `takeErrorBeforeInjectedSync`).
    private(set) var errorBeforeInjectedSync = false

    /// Server-side statement names whose Parse succeeded since the last call to `takeSucceededStatements()`.
    private(set) var succeededStatements: [String] = []
    /// Client statements whose Parse failed or was skipped: (server-side name, client name).
    private(set) var failedClientStatements: [(statement: String, client: String?)] = []
    /// Client name changes to revert, in the order they were made (see `StatementUndo`); a failed Parse of a
    /// client name is one too (`.forget`, only if the name still maps to that statement).
    private(set) var undos: [StatementUndo] = []
    /// Statements the pooler re-prepared whose Parse failed or was skipped after an error: the server lacks them,
    /// but the clients' statements stay (the next use prepares them again).
    private(set) var lostStatements: [String] = []
    /// Statements whose injected Close was skipped after an error: the server still holds them.
    private(set) var unclosedStatements: [String] = []

    struct StatementOutcomes {
        var failed: [(statement: String, client: String?)]
        var lost: [String]
        var unclosed: [String]
        var undos: [StatementUndo]
    }

    /// Takes the statement outcomes of errors since the last call.
    mutating func takeStatementOutcomes() -> StatementOutcomes {
        defer {
            failedClientStatements.removeAll()
            lostStatements.removeAll()
            unclosedStatements.removeAll()
            undos.removeAll()
        }
        return StatementOutcomes(failed: failedClientStatements, lost: lostStatements, unclosed: unclosedStatements,
                                 undos: undos)
    }

    /// Whether a statement-changing entry (a Parse of a named statement, an injected Parse or Close, a Parse or
    /// Close the pooler answered) is still unresolved behind a Sync already sent. Messages that read or change the
    /// client's statement names must wait for it: if it fails, Postgres would treat them differently.
    var hasUnresolvedStatementsBeforeSync: Bool {
        var unresolved = false
        for slot in slots[head...] {
            switch slot.kind {
            case .parse:
                if case .parse(_?, _) = payload(of: slot) { unresolved = true }
            case .injectedParse, .injectedClose, .syntheticStatement:
                unresolved = true
            case .sync:
                if unresolved { return true }
            default:
                break
            }
        }
        return false
    }

    /// The pooler-named statement whose statement Describe (the client's, for its name `client`, or the pooler's
    /// own) the next RowDescription or NoData answers, if any.
    var headDescribedStatement: (statement: String, client: String?)? {
        guard head < slots.count else { return nil }
        switch payload(of: slots[head]) {
        case .describeStatement(let statement?, let client)?: return (statement, client)
        case .injected(.describe(let statement))?: return (statement, nil)
        default: return nil
        }
    }

    /// The pooler-named statement the next reply concerns (a Bind or statement Describe of one), if any.
    var headStatement: String? {
        guard head < slots.count else { return nil }
        switch payload(of: slots[head]) {
        case .bind(let statement?)?, .describeStatement(let statement?, _)?: return statement
        default: return nil
        }
    }

    /// Entries still awaiting a reply (including pooler replies not yet due).
    var pendingCount: Int { slots.count - head }

    mutating func takeSucceededStatements() -> [String] {
        defer { succeededStatements.removeAll() }
        return succeededStatements
    }

    var isEmpty: Bool { head == slots.count }

    /// The next reply from the server answers an injected message and will be dropped (so read it whole).
    var nextReplyIsDropped: Bool {
        guard head < slots.count else { return false }
        switch slots[head].kind {
        case .injectedParse, .injectedClose, .injectedDescribe, .injectedQuery, .injectedRestore: return true
        default: return false
        }
    }


    // MARK: client -> server

    /// A client (or injected) message with this identifier was sent to the server.
    mutating func sent(_ id: UInt8, describesStatement: Bool = false) {
        switch id {
        case FrontendID.parse: appendPlain(.parse)
        case FrontendID.bind: appendPlain(.bind)
        case FrontendID.describe: appendPlain(describesStatement ? .describeStatement : .describePortal)
        case FrontendID.execute: appendPlain(.execute)
        case FrontendID.close: appendPlain(.close)
        case FrontendID.sync: appendPlain(.sync)
        case FrontendID.query: appendPlain(.query)
        case FrontendID.functionCall: appendPlain(.functionCall)
        case FrontendID.copyDone, FrontendID.copyFail: copyIn = false
        default: break  // Flush, CopyData: no reply of their own
        }
    }

    /// Queues an entry the relay built itself (synthetic or injected).
    mutating func append(_ entry: Entry) {
        let (kind, carriesPayload) = Kind.of(entry)
        guard carriesPayload else {
            appendPlain(kind)
            return
        }
        guard !serverSkipping else {
            // The server skips everything up to the next Sync, so it answers none of it (see `appendPlain`).
            noteSkipped(entry)
            return
        }
        if kind == .injectedDescribe { pendingInjectedDescribes += 1 }
        slots.append(Slot(kind: kind, payload: Int32(payloads.count)))
        payloads.append(entry)
    }

    /// Queues an entry without a payload.
    private mutating func appendPlain(_ kind: Kind) {
        if copyIn && kind == .sync { return }  // ignored by the server during COPY FROM
        if serverSkipping {
            // The server skips everything up to the next Sync (Queries included), so it answers none of it;
            // that Sync ends the skipping for whatever the client sends after it. (Skipping an entry without a
            // payload undoes nothing.)
            guard kind == .sync || kind == .injectedSync else { return }
            serverSkipping = false
        }
        if kind.isSyncPoint { pendingSyncPoints += 1 }
        if kind.isClientSyncPoint { pendingClientSyncPoints += 1 }
        if kind == .injectedRestore { pendingRestores += 1 }
        if kind == .injectedSync { pendingInjectedSyncs += 1 }
        slots.append(Slot(kind: kind, payload: -1))
    }

    /// Synthetic replies now due, in order (call after `sent` and after each server frame).
    mutating func dueSynthetic(status: TransactionStatus) -> ByteBuffer? {
        guard head < slots.count else { return nil }
        switch slots[head].kind {
        case .synthetic, .syntheticStatement:
            let entry = payload(of: slots[head])
            pop()
            switch entry {
            case .synthetic(let reply)?, .syntheticStatement(let reply, _)?: return reply
            default: preconditionFailure("a synthetic entry keeps its reply")
            }
        case .syntheticReady:
            pop()
            var ready = ByteBuffer()
            MessageEncoder.readyForQuery(status, into: &ready)
            return ready
        default:
            return nil
        }
    }

    // MARK: server -> client

    /// A frame from the server: decides whether it reaches the client and advances the order.
    mutating func received(_ id: UInt8) -> Disposition {
        if id == BackendID.errorResponse { unitFailed = true }
        if head < slots.count, id != BackendID.readyForQuery,
           slots[head].kind == .injectedQuery || slots[head].kind == .injectedRestore && id != BackendID.parameterStatus
            && id != BackendID.notificationResponse {
            return .drop  // every reply to the pooler's own query, notices included
        }
        switch id {
        case BackendID.noticeResponse, BackendID.notificationResponse, BackendID.parameterStatus:
            return .forward  // asynchronous: belongs to no request
        case BackendID.readyForQuery:
            serverSkipping = false
            lastUnitFailed = unitFailed
            unitFailed = false
            guard let index = slots[head...].firstIndex(where: \.kind.isSyncPoint) else { return .forward }
            if pendingInjectedDescribes > 0 {  // (entries the server did not answer one by one)
                pendingInjectedDescribes -= slots[head..<index].count { $0.kind == .injectedDescribe }
            }
            head = index
            let kind = slots[head].kind
            let dropped = kind == .injectedQuery || kind == .injectedSync || kind == .injectedRestore
            pop()
            return dropped ? .drop : .forward
        case BackendID.copyInResponse:
            copyIn = true
            dropSyncsAfterHead()
            return .forward
        default:
            break
        }
        guard head < slots.count else { return .forward }  // (an injected Query at the head dropped it above)
        let slot = slots[head]
        if id == BackendID.errorResponse {
            switch slot.kind {
            case .query, .functionCall, .sync:
                return .forward  // ReadyForQuery still ends it
            case .injectedRefusal:
                skipToSync()  // (pops the refusal itself)
                return .drop
            default:
                // A failed statement the pooler re-prepared (e.g. its table is gone) fails the client's request
                // that needed it with this error, as it would have on the server that first prepared it.
                skipToSync()
                return .forward
            }
        }
        let completes: Bool
        switch slot.kind {
        case .parse:
            completes = id == BackendID.parseComplete
            if completes, case .parse(let statement?, _) = payload(of: slot) {
                succeededStatements.append(statement)
            }
        case .bind: completes = id == BackendID.bindComplete
        case .close: completes = id == BackendID.closeComplete
        case .describeStatement, .describePortal:
            completes = id == BackendID.rowDescription || id == BackendID.noData
        case .execute:
            completes = id == BackendID.commandComplete || id == BackendID.portalSuspended
                || id == BackendID.emptyQueryResponse
        case .injectedParse:
            let entry = payload(of: slot)
            pop()
            guard id == BackendID.parseComplete else { return .forward }
            if case .injected(.parse(let statement))? = entry { succeededStatements.append(statement) }
            return .drop
        case .injectedClose:
            pop()
            return id == BackendID.closeComplete ? .drop : .forward
        case .injectedDescribe:
            if id == BackendID.rowDescription || id == BackendID.noData { pop() }
            return .drop  // (and its ParameterDescription)
        case .injectedRefusal:
            pop()
            return .drop  // (the server accepted it after all: nothing to show)
        case .sync, .query, .functionCall, .synthetic, .syntheticStatement, .syntheticReady, .injectedQuery,
             .injectedSync, .injectedRestore:
            return .forward
        }
        if completes { pop() }
        return .forward
    }

    mutating func reset() {
        slots.removeAll(keepingCapacity: true)
        payloads.removeAll(keepingCapacity: true)
        head = 0
        serverSkipping = false
        copyIn = false
        pendingSyncPoints = 0
        pendingClientSyncPoints = 0
        pendingRestores = 0
        pendingInjectedSyncs = 0
        pendingInjectedDescribes = 0
        errorBeforeInjectedSync = false
        unitFailed = false
        lastUnitFailed = false
    }

    // MARK: helpers

    /// The entry kept for `slot`, if it carries something.
    private func payload(of slot: Slot) -> Entry? {
        slot.payload >= 0 ? payloads[Int(slot.payload)] : nil
    }

    private mutating func pop() {
        if slots[head].kind.isSyncPoint { pendingSyncPoints -= 1 }
        if slots[head].kind.isClientSyncPoint { pendingClientSyncPoints -= 1 }
        if slots[head].kind == .injectedRestore { pendingRestores -= 1 }
        if slots[head].kind == .injectedSync { pendingInjectedSyncs -= 1 }
        if slots[head].kind == .injectedDescribe { pendingInjectedDescribes -= 1 }
        head += 1
        if head == slots.count {
            slots.removeAll(keepingCapacity: true)
            if !payloads.isEmpty { payloads.removeAll(keepingCapacity: true) }
            head = 0
        }
    }

    /// After an error in an extended message (the one at the head): the server skips every message up to the next
    /// Sync, Queries and FunctionCalls included. Drop those entries, noting the statements that were not prepared
    /// or closed after all; if that Sync was sent already, skipping ends there.
    private mutating func skipToSync() {
        while head < slots.count, slots[head].kind != .sync, slots[head].kind != .injectedSync {
            if let entry = payload(of: slots[head]) { noteSkipped(entry) }
            pop()
        }
        if head < slots.count, slots[head].kind == .injectedSync { errorBeforeInjectedSync = true }
        serverSkipping = head == slots.count
    }

    /// An entry the server will not carry out (failed, or skipped after an error): note what that undoes.
    private mutating func noteSkipped(_ entry: Entry) {
        switch entry {
        case .parse(let statement?, let client):
            failedClientStatements.append((statement, client))
            if let client { undos.append(.forgetIfMapped(client: client, statement: statement)) }
        case .syntheticStatement(_, let undo): undos.append(undo)
        case .injected(.parse(let statement)): lostStatements.append(statement)
        case .injected(.close(let statement)): unclosedStatements.append(statement)
        default: break
        }
    }

    /// COPY FROM started: Syncs the client already pipelined behind the COPY are ignored by the server.
    private mutating func dropSyncsAfterHead() {
        let start = head + 1
        guard start < slots.count else { return }
        let kept = slots[start...].filter { $0.kind != .sync }
        pendingSyncPoints -= slots.count - start - kept.count
        pendingClientSyncPoints -= slots.count - start - kept.count
        slots.replaceSubrange(start..., with: kept)
    }

    // MARK: the queue's slots

    /// A Sync, Query or FunctionCall of the client's is still unanswered (the pooler's own queries do not count).
    var awaitsClientSyncPoint: Bool { pendingClientSyncPoints > 0 }

    /// The pooler's own restore of login settings (`Injected.restore`) is unanswered: the server is not free to
    /// take the client's next transaction elsewhere yet. (Counted: the relay asks for every frame.)
    var awaitsRestore: Bool { pendingRestores > 0 }
    private var pendingRestores = 0

    /// The server sent an error since its last ReadyForQuery; `lastUnitFailed`: it did before that one.
    private var unitFailed = false
    private(set) var lastUnitFailed = false

    mutating func takeErrorBeforeInjectedSync() -> Bool {
        defer { errorBeforeInjectedSync = false }
        return errorBeforeInjectedSync
    }

    /// A Sync of the pooler's own is still unanswered. (Counted: the relay asks on every call.)
    var awaitsInjectedSync: Bool { pendingInjectedSyncs > 0 }
    private var pendingInjectedSyncs = 0

    /// A Describe of the pooler's own is unanswered (and not skipped after an error).
    var awaitsInjectedDescribe: Bool { pendingInjectedDescribes > 0 }
    private var pendingInjectedDescribes = 0

    /// One entry of the queue: its kind, and where its payload is (-1: none).
    private struct Slot {
        var kind: Kind
        var payload: Int32
    }

    /// The cases of `Entry` without their payloads.
    private enum Kind: UInt8 {
        case parse, bind, describeStatement, describePortal, execute, close, sync, query, functionCall
        case synthetic, syntheticStatement, syntheticReady, injectedParse, injectedClose, injectedDescribe
        case injectedQuery, injectedSync, injectedRefusal, injectedRestore

        var isSyncPoint: Bool {
            switch self {
            case .sync, .query, .functionCall, .injectedQuery, .injectedSync, .injectedRestore: return true
            default: return false
            }
        }

        var isClientSyncPoint: Bool { self == .sync || self == .query || self == .functionCall }

        /// The kind of `entry`, and whether it carries something the queue must keep (in `payloads`).
        static func of(_ entry: Entry) -> (kind: Kind, carriesPayload: Bool) {
            switch entry {
            case .parse(let statement, let client): return (.parse, statement != nil || client != nil)
            case .bind(let statement): return (.bind, statement != nil)
            case .describeStatement(let statement, _): return (.describeStatement, statement != nil)
            case .describePortal: return (.describePortal, false)
            case .execute: return (.execute, false)
            case .close: return (.close, false)
            case .sync: return (.sync, false)
            case .query: return (.query, false)
            case .functionCall: return (.functionCall, false)
            case .synthetic: return (.synthetic, true)
            case .syntheticStatement: return (.syntheticStatement, true)
            case .syntheticReady: return (.syntheticReady, false)
            case .injected(.parse): return (.injectedParse, true)
            case .injected(.close): return (.injectedClose, true)
            case .injected(.describe): return (.injectedDescribe, true)
            case .injected(.query): return (.injectedQuery, false)
            case .injected(.sync): return (.injectedSync, false)
            case .injected(.refusal): return (.injectedRefusal, false)
            case .injected(.restore): return (.injectedRestore, false)
            }
        }
    }
}
