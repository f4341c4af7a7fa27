/// Seeded fuzzing of the transaction-mode relay: several clients share a small pool and send random sequences of
/// extended-protocol messages on the unnamed statement and portal (Parse, Bind, Describe, Execute, Flush, Sync,
/// Close) and simple Queries, while the test plays a tiny but protocol-faithful Postgres on every server channel,
/// answering in random-sized bursts split at any byte. Every query text carries a tag unique to its client and sequence number, so a
/// reply relayed to the wrong client, or in the wrong order, shows up. Deterministic: no sleeps, no system randomness.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class RelayInterleavingFuzzTests: XCTestCase {
    // MARK: a tiny Postgres

    /// One backend's view of the unnamed statement and portal. Replies are symbols: `1` ParseComplete,
    /// `2` BindComplete, `3` CloseComplete, `t` ParameterDescription, `T` RowDescription, `D:<tag>` DataRow,
    /// `C` CommandComplete, `E` ErrorResponse, `Z:<status>` ReadyForQuery.
    /// A query text containing `fail-parse` fails at Parse; one containing `fail-exec` fails at Execute (or as a
    /// simple Query). After an error in an extended-protocol message everything up to Sync is skipped.
    private struct FakePostgres {
        var statement: String?
        var portal: String?
        var skipping = false

        static func tag(of sql: String) -> String {
            let parts = sql.split(separator: "'", omittingEmptySubsequences: false)
            return parts.count >= 3 ? String(parts[1]) : ""
        }

        mutating func handle(_ message: WireMessage) -> [String] {
            var payload = message.payload
            if skipping && message.id != FrontendID.sync { return [] }
            switch message.id {
            case FrontendID.parse:
                _ = payload.readNullTerminatedString()
                let sql = payload.readNullTerminatedString() ?? ""
                if sql.contains("fail-parse") { return fail() }
                statement = sql
                return ["1"]
            case FrontendID.bind:
                guard let statement else { return fail() }
                portal = statement
                return ["2"]
            case FrontendID.describe:
                let kind = payload.readInteger(as: UInt8.self)
                if kind == UInt8(ascii: "S") {
                    return statement == nil ? fail() : ["t", "T"]
                }
                return portal == nil ? fail() : ["T"]
            case FrontendID.execute:
                guard let portal else { return fail() }
                if portal.contains("fail-exec") { return fail() }
                return ["D:\(Self.tag(of: portal))", "C"]
            case FrontendID.close:
                let kind = payload.readInteger(as: UInt8.self)
                if kind == UInt8(ascii: "P") { portal = nil } else { statement = nil }
                return ["3"]
            case FrontendID.flush:
                return []
            case FrontendID.sync:
                skipping = false
                portal = nil  // the implicit transaction ends: portals go
                return ["Z:I"]
            case FrontendID.query:
                let sql = payload.readNullTerminatedString() ?? ""
                statement = nil  // a simple query replaces the unnamed statement and portal
                portal = nil
                if sql.contains("fail-exec") { return ["E", "Z:I"] }
                return ["T", "D:\(Self.tag(of: sql))", "C", "Z:I"]
            default:
                XCTFail("fake server got an unexpected message \(message)")
                return []
            }
        }

        private mutating func fail() -> [String] {
            skipping = true
            return ["E"]
        }
    }

    private static func encode(_ symbol: String) -> ByteBuffer {
        switch symbol {
        case "1": return Backend.empty(BackendID.parseComplete)
        case "2": return Backend.empty(BackendID.bindComplete)
        case "3": return Backend.empty(BackendID.closeComplete)
        case "t": return Backend.parameterDescription()
        case "T": return Backend.rowDescription(["tag"])
        case "C": return Backend.commandComplete("SELECT 1")
        case "E": return Backend.error(SQLState("42000"), "injected failure")
        case "Z:I": return Backend.ready(.idle)
        default:
            precondition(symbol.hasPrefix("D:"))
            return Backend.dataRow([String(symbol.dropFirst(2))])
        }
    }

    private static func symbol(of message: WireMessage) -> String {
        switch message.id {
        case BackendID.dataRow:
            var payload = message.payload
            guard payload.readInteger(as: Int16.self) == 1, let length = payload.readInteger(as: Int32.self),
                  let value = payload.readString(length: Int(length)) else { return "D:?" }
            return "D:\(value)"
        case BackendID.readyForQuery:
            return "Z:\(message.readyStatus.map(String.init) ?? "?")"
        default:
            return String(message.idCharacter)
        }
    }

    // MARK: client scripts

    private static func describePortal() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.describe, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "P"))
            $0.writeNullTerminatedString("")
        }
        return buffer
    }

    private static func closePortal() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.close, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "P"))
            $0.writeNullTerminatedString("")
        }
        return buffer
    }

    /// A random, valid message sequence for client `client` that never relies on the unnamed statement or portal
    /// surviving a Sync or a Query (in transaction mode the next group may run on another server connection).
    /// Ends with a Sync.
    private static func script(client: Int, queryInsideGroup: Bool, avoidKnownBugs: Bool,
                               using rng: inout PoolRandom) -> [ByteBuffer] {
        var messages: [ByteBuffer] = []
        var sequence = 0
        var hasStatement = false, hasPortal = false, executed = false, inGroup = false
        // Whether the current statement/portal will fail at Execute, and whether the group already failed (Postgres
        // then skips everything, a Query included, up to the Sync).
        var statementFailsExecute = false, portalFailsExecute = false, groupFailed = false
        func sql(_ failure: String) -> String {
            sequence += 1
            let marker = Int.random(in: 0..<10, using: &rng) == 0 ? " /*\(failure)*/" : ""
            return "SELECT 'c\(client)-\(sequence)'\(marker)"
        }
        let steps = Int.random(in: 4...24, using: &rng)
        for _ in 0..<steps {
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<22:
                let failure = Bool.random(using: &rng) ? "fail-parse" : "fail-exec"
                let text = sql(failure)
                messages.append(Frontend.parse(text))
                hasStatement = true
                statementFailsExecute = text.contains("fail-exec")
                groupFailed = groupFailed || text.contains("fail-parse")
                inGroup = true
            case 22..<40 where hasStatement:
                messages.append(Frontend.bind())
                hasPortal = true
                portalFailsExecute = statementFailsExecute
                executed = false
            case 40..<48 where hasStatement:
                messages.append(Frontend.describeStatement())
            case 48..<54 where hasPortal:
                messages.append(describePortal())
            case 54..<70 where hasPortal && !executed:
                messages.append(Frontend.execute())
                executed = true
                groupFailed = groupFailed || portalFailsExecute
            case 70..<74:
                messages.append(closePortal())
                hasPortal = false
                inGroup = true
            case 74..<78:
                messages.append(Frontend.flush())
            case 78..<90:
                messages.append(Frontend.sync())
                hasStatement = false
                hasPortal = false
                inGroup = false
                groupFailed = false
            case 90..<100 where !inGroup || (queryInsideGroup && !(avoidKnownBugs && groupFailed)):
                messages.append(Frontend.query(sql("fail-exec")))
                hasStatement = false
                hasPortal = false
            default:
                break
            }
        }
        messages.append(Frontend.sync())
        return messages
    }

    // MARK: the run

    private struct ServerSim {
        var postgres = FakePostgres()
        var loggedIn: Bool
        var inbox = ByteBuffer()
    }

    /// Runs one seed; returns a failure description, or nil.
    /// `avoidKnownBugs`: after a client got an ErrorResponse whose ReadyForQuery has not arrived yet, it sends
    /// nothing past its next Sync until that ReadyForQuery arrives (see
    /// `testQuerySentBehindSyncAfterAnErrorArrivedIsAwaitedAndItsRowsGoToItsClient`).
    private func run(seed: UInt64, queryInsideGroup: Bool, avoidKnownBugs: Bool, trace: Bool = false) -> String? {
        var rng = PoolRandom(seed: seed &+ 0x9E37_79B9_7F4A_7C15)
        let poolSize = Int.random(in: 1...2, using: &rng)
        let clientCount = Int.random(in: 3...4, using: &rng)
        let h = PoolerHarness(PoolerHarness.Options(poolSize: poolSize))
        let (first, _) = h.loginFirstClient()
        let clients = [first] + (1..<clientCount).map { _ in h.loginClient() }
        var servers = [ServerSim(loggedIn: true)]

        let scripts = (0..<clientCount).map { Self.script(client: $0, queryInsideGroup: queryInsideGroup,
                                                           avoidKnownBugs: avoidKnownBugs, using: &rng) }
        let expected: [[String]] = scripts.map { script in
            var model = FakePostgres()
            return script.flatMap { wireMessages($0) }.flatMap { model.handle($0) }
        }
        var cursors = Array(repeating: 0, count: clientCount)
        var sentSyncPoints = Array(repeating: 0, count: clientCount)
        func isSyncPoint(_ message: ByteBuffer) -> Bool {
            let id = message.getInteger(at: message.readerIndex, as: UInt8.self)
            return id == FrontendID.sync || id == FrontendID.query
        }
        func awaitsReadyAfterError(_ index: Int) -> Bool {
            guard avoidKnownBugs, let error = received[index].lastIndex(of: "E") else { return false }
            return !received[index][error...].contains { $0.hasPrefix("Z") }
        }
        var received: [[String]] = Array(repeating: [], count: clientCount)
        var clientBytes = Array(repeating: ByteBuffer(), count: clientCount)  // what each client has not read whole

        enum Action { case client(Int), login(Int), answer(Int) }
        var steps = 0
        while true {
            steps += 1
            if steps > 100_000 { return "no quiescence after \(steps) steps" }
            while servers.count < h.connector.connects.count { servers.append(ServerSim(loggedIn: false)) }
            for (index, client) in clients.enumerated() {
                var bytes = client.drainOutbound()
                clientBytes[index].writeBuffer(&bytes)
                let got = Self.completeFrames(&clientBytes[index]).map(Self.symbol(of:))
                if trace && !got.isEmpty { print("TRACE client \(index) got \(got)") }
                received[index] += got
            }
            var actions: [Action] = []
            for index in clients.indices where cursors[index] < scripts[index].count {
                let readies = received[index].filter { $0.hasPrefix("Z") }.count
                if awaitsReadyAfterError(index) && sentSyncPoints[index] > readies { continue }
                actions.append(.client(index))
            }
            for index in servers.indices {
                if !servers[index].loggedIn {
                    actions.append(.login(index))
                    continue
                }
                var bytes = h.serverChannels[index].drainOutbound()
                servers[index].inbox.writeBuffer(&bytes)
                if servers[index].inbox.readableBytes > 0 { actions.append(.answer(index)) }
            }
            guard let action = actions.randomElement(using: &rng) else { break }
            switch action {
            case .client(let index):
                var count = min(Int.random(in: 1...4, using: &rng), scripts[index].count - cursors[index])
                if awaitsReadyAfterError(index),
                   let sync = scripts[index][cursors[index]..<cursors[index] + count].firstIndex(where: {
                       $0.getInteger(at: $0.readerIndex, as: UInt8.self) == FrontendID.sync }) {
                    count = sync - cursors[index] + 1  // nothing behind the Sync until its ReadyForQuery
                }
                var write = ByteBuffer()
                for var message in scripts[index][cursors[index]..<cursors[index] + count] {
                    write.writeBuffer(&message)
                }
                let chunk = scripts[index][cursors[index]..<cursors[index] + count]
                sentSyncPoints[index] += chunk.filter(isSyncPoint).count
                cursors[index] += count
                if trace { print("TRACE client \(index) sends \(ids(wireMessages(write)))") }
                h.send(write, to: clients[index])
            case .login(let index):
                h.playServerStartup(h.serverChannels[index], key: BackendKeyData(processID: Int32(100 + index),
                                                                                  secretKey: 7))
                servers[index].loggedIn = true
            case .answer(let index):
                // Answer a random number of the complete frames received, in one or two writes.
                let frames = Self.completeFrames(&servers[index].inbox)
                let take = Int.random(in: 1...max(1, frames.count), using: &rng)
                var replies: [String] = []
                for frame in frames.prefix(take) { replies += servers[index].postgres.handle(frame) }
                var rest = ByteBuffer()
                for frame in frames.dropFirst(take) {
                    rest.writeInteger(frame.id)
                    rest.writeInteger(Int32(frame.payload.readableBytes + 4))
                    var payload = frame.payload
                    rest.writeBuffer(&payload)
                }
                rest.writeBuffer(&servers[index].inbox)
                servers[index].inbox = rest
                if trace { print("TRACE server \(index) handles \(ids(Array(frames.prefix(take)))) -> \(replies)") }
                guard !replies.isEmpty else { continue }
                var all = ByteBuffer()
                for symbol in replies {
                    var encoded = Self.encode(symbol)
                    all.writeBuffer(&encoded)
                }
                h.sendSplitAtAnyByte(all, to: h.serverChannels[index], using: &rng)
            }
        }

        let context = "seed \(seed) (pool \(poolSize), \(clientCount) clients, \(servers.count) servers)"
        for index in clients.indices {
            let context = context + " script \(ids(scripts[index].flatMap { wireMessages($0) }))"
            let own = "D:c\(index)-"
            if let stray = received[index].first(where: { $0.hasPrefix("D:") && !$0.hasPrefix(own) }) {
                return "\(context): client \(index) got another client's row \(stray)"
            }
            // One ReadyForQuery per Sync or Query Postgres answers (a Query skipped after an error gets none):
            // the expected replies of the model already say how many.
            let syncPoints = expected[index].filter { $0.hasPrefix("Z") }.count
            let readies = received[index].filter { $0.hasPrefix("Z") }.count
            if readies != syncPoints {
                return "\(context): client \(index) got \(readies) ReadyForQuery for \(syncPoints) expected"
                    + "\n  got      \(received[index])\n  expected \(expected[index])"
            }
            if received[index] != expected[index] {
                return "\(context): client \(index)\n  got      \(received[index])\n  expected \(expected[index])"
            }
            guard let handler = h.handler(of: clients[index]) else { return "\(context): client \(index) gone" }
            if handler.server != nil || handler.waiting {
                return "\(context): client \(index) not idle (server: \(handler.server != nil), "
                    + "waiting: \(handler.waiting))"
            }
        }
        let counts = h.pool.counts()
        if counts.active != 0 || counts.waiting != 0 {
            return "\(context): pool not settled: \(counts)"
        }
        return nil
    }

    private static func completeFrames(_ inbox: inout ByteBuffer) -> [WireMessage] {
        var frames: [WireMessage] = []
        while let (id, length) = inbox.getMultipleIntegers(at: inbox.readerIndex, as: (UInt8, Int32).self),
              length >= 4, inbox.readableBytes >= 1 + Int(length) {
            inbox.moveReaderIndex(forwardBy: 5)
            frames.append(WireMessage(id: id, payload: inbox.readSlice(length: Int(length) - 4)!))
        }
        return frames
    }

    private func fuzz(seeds: Range<UInt64>, queryInsideGroup: Bool, avoidKnownBugs: Bool) {
        for seed in seeds {
            if let failure = run(seed: seed, queryInsideGroup: queryInsideGroup, avoidKnownBugs: avoidKnownBugs) {
                XCTFail(failure)
                return  // one minimal report, not hundreds
            }
        }
    }

    // MARK: tests

    func testRandomExtendedAndSimpleTrafficFromSeveralClientsIsRelayedInOrderToItsOwnClient() {
        fuzz(seeds: 0..<400, queryInsideGroup: false, avoidKnownBugs: false)
    }

    /// Queries between extended messages of one group too, but never after a message of that group failed (see
    /// `testQueryAfterFailedParseBeforeSyncIsSkippedAndTheServerReleased`).
    func testSimpleQueriesInsideUnsyncedExtendedGroupsAreRelayedInOrder() {
        fuzz(seeds: 1000..<1400, queryInsideGroup: true, avoidKnownBugs: true)
    }

    /// Regression: this failed on the two ResponseTracker bugs below (first at seed 1002: a server never released).
    /// Without the scheduling restriction alone, seed 1020 sends a client's DataRow to another client.
    /// Enable once they are fixed.
    func testRandomTrafficIncludingQueriesAfterErrorsIsRelayedInOrderToItsOwnClient() {
        fuzz(seeds: 1000..<1400, queryInsideGroup: true, avoidKnownBugs: false)
    }

    /// Regression (a reply reached the wrong client before the fix). Minimal case: after an ErrorResponse to an
    /// extended-protocol message has arrived, the client sends a Query behind its Sync before that Sync's
    /// ReadyForQuery arrives. Postgres stops skipping at the Sync and runs the Query, but `ResponseTracker.append`
    /// still drops every non-Sync entry while `serverSkipping` is set (it is only cleared by ReadyForQuery), so the
    /// Query is not awaited: the server is released at the Sync's ReadyForQuery and the Query's rows go to `b`.
    func testQuerySentBehindSyncAfterAnErrorArrivedIsAwaitedAndItsRowsGoToItsClient() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        let failing = concat(Frontend.parse("SELECT 'a-1' /*fail-parse*/"), Frontend.sync())
        h.send(failing, to: a)
        XCTAssertEqual(server.drainOutbound(), failing)
        let error = Backend.error(SQLState("42601"), "syntax error")
        h.send(error, to: server)  // the Sync's ReadyForQuery is still to come
        XCTAssertEqual(a.drainOutbound(), error)

        h.send(Frontend.query("SELECT 'a-2'"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 'a-2'"))
        h.send(Frontend.query("SELECT 'b-1'"), to: b)  // b waits for the only connection

        h.send(Backend.ready(.idle), to: server)  // answers a's Sync
        XCTAssertEqual(a.drainOutbound(), Backend.ready(.idle))
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "a's Query is still running: not released to b")
        XCTAssertEqual(h.pool.counts().active, 1)

        let rows = concat(Backend.rowDescription(["tag"]), Backend.dataRow(["a-2"]),
                          Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(rows, to: server)
        XCTAssertEqual(a.drainOutbound(), rows, "a's rows go to a")
        XCTAssertEqual(b.drainOutbound().readableBytes, 0, "b sees nothing of a's Query")
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 'b-1'"), "then b gets the server")
    }

    /// Regression (the server stayed leased forever before the fix). Minimal case: Postgres skips a Query that follows a
    /// failed extended-protocol message (up to the Sync), so the only ReadyForQuery is the Sync's. But
    /// `ResponseTracker.skipToSync` stops at the Query (a sync point), so that ReadyForQuery is taken as the Query's
    /// and the Sync stays awaited: the pooler should release the server here, and does not.
    func testQueryAfterFailedParseBeforeSyncIsSkippedAndTheServerReleased() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        let sent = concat(Frontend.parse("SELECT 'a-1' /*fail-parse*/"), Frontend.query("SELECT 'a-2'"),
                          Frontend.sync())
        h.send(sent, to: a)
        XCTAssertEqual(server.drainOutbound(), sent)
        let reply = concat(Backend.error(SQLState("42601"), "syntax error"), Backend.ready(.idle))
        h.send(reply, to: server)  // Postgres: E for the Parse, Query skipped, Z for the Sync
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().active, 0, "everything a sent was answered: the server is released")
        XCTAssertNil(h.handler(of: a)?.server)

        h.send(Frontend.query("SELECT 'b-1'"), to: b)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 'b-1'"), "b gets the server")
    }
}
