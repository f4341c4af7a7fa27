/// Seeded fuzzing of NAMED prepared statements in transaction mode: several clients share a pool of one or two server
/// connections whose statement caches are tiny (2 or 3), and send random extended-protocol traffic on the names
/// s0..s3 (Parse, Bind into the unnamed portal, Describe of a statement or the portal, Execute, Close of a statement,
/// Flush, Sync) and simple Queries. The pooler renames them to pool-wide `PGCAT_<n>`, answers Close itself, reuses
/// and re-prepares server copies, and evicts (injecting Close) as the caches overflow; errors in a batch make the
/// server skip injected Parses and Closes too. The test plays a protocol-faithful Postgres on every server channel
/// that keeps a dictionary of named statements (42P05 on a duplicate Parse, 26000 on an unknown Bind/Describe,
/// everything up to Sync skipped after an error), answering in random-sized bursts split at any byte.
///
/// It checks that
/// - each client gets exactly what one direct Postgres connection would have answered to its own message stream
///   (the same fake run as a model over that stream; SQLSTATEs included, and texts carry a tag of their client, so
///   a row or error relayed to the wrong client, or in the wrong order, shows up);
/// - the servers never answer 42P05 or 26000 for a `PGCAT_` name, and never see a client's own statement name (the
///   pooler's bookkeeping of what each server holds never breaks);
/// - afterwards every client is idle with exactly the statements Postgres would have left it, every server holds
///   every statement the pooler caches for it and none the pooler does not know of (cached, or marked to be closed
///   before it is prepared again), and the pool is settled.
/// Seven minimal reproductions at the end show the bugs it found (a client pipelining past an error).
/// Deterministic: no sleeps, no system randomness.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class NamedStatementFuzzTests: XCTestCase {
    // MARK: a tiny Postgres

    /// One backend: its named (and unnamed) prepared statements and its unnamed portal. Used both as the fake server
    /// behind the pooler and as the model of a direct connection for each client.
    ///
    /// Replies are symbols: `1` ParseComplete, `2` BindComplete, `3` CloseComplete, `t` ParameterDescription,
    /// `T` RowDescription, `D:<tag>` DataRow, `C` CommandComplete, `E:<SQLSTATE>` ErrorResponse, `Z:<status>`
    /// ReadyForQuery. A text containing `fail-parse` fails at Parse (42601), one containing `fail-exec` at Execute
    /// or as a simple Query (42000). A duplicate Parse name is 42P05 (checked after the syntax, as Postgres does),
    /// an unknown statement 26000, a missing portal 34000; after an error in an extended-protocol message everything
    /// up to Sync is skipped (Queries included). Prepared statements are not transactional: a Parse that succeeded
    /// stays, whatever fails after it.
    private struct FakePostgres {
        var statements: [String: String] = [:]
        var portal: String?
        var skipping = false
        /// Breaches of the pooler's bookkeeping seen by a fake server (a model of a client never records any).
        var violations: [String] = []
        /// Whether this is a server behind the pooler (which must only ever see `PGCAT_` names).
        var isServer = false

        static func tag(of sql: String) -> String {
            let parts = sql.split(separator: "'", omittingEmptySubsequences: false)
            return parts.count >= 3 ? String(parts[1]) : ""
        }

        /// A server behind the pooler must only see pooler names (or the unnamed statement).
        private mutating func checkName(_ name: String, in message: String) {
            if isServer && !name.isEmpty && !name.hasPrefix("PGCAT_") {
                violations.append("server got client name \(name) in \(message)")
            }
        }

        /// An error about a statement name; 42P05/26000 on a pooler name means its bookkeeping broke.
        private mutating func nameError(_ code: String, _ name: String) -> [String] {
            if name.hasPrefix("PGCAT_") { violations.append("server answered \(code) for \(name)") }
            return fail(code)
        }

        mutating func handle(_ message: WireMessage) -> [String] {
            var payload = message.payload
            if skipping && message.id != FrontendID.sync { return [] }
            switch message.id {
            case FrontendID.parse:
                let name = payload.readNullTerminatedString() ?? ""
                let sql = payload.readNullTerminatedString() ?? ""
                // The pooler failing a unit on the server as its own error did (not a statement: a syntax error).
                if isServer && name == "pgcat_refused" && sql == "pgcat refused this unit" { return fail("42601") }
                checkName(name, in: "Parse")
                if sql.contains("fail-parse") { return fail("42601") }
                if !name.isEmpty && statements[name] != nil { return nameError("42P05", name) }
                statements[name] = sql
                return ["1"]
            case FrontendID.bind:
                _ = payload.readNullTerminatedString()  // portal: always the unnamed one here
                let name = payload.readNullTerminatedString() ?? ""
                checkName(name, in: "Bind")
                guard let statement = statements[name] else { return nameError("26000", name) }
                portal = statement
                return ["2"]
            case FrontendID.describe:
                let kind = payload.readInteger(as: UInt8.self)
                let name = payload.readNullTerminatedString() ?? ""
                if kind == UInt8(ascii: "S") {
                    checkName(name, in: "Describe")
                    return statements[name] == nil ? nameError("26000", name) : ["t", "T"]
                }
                return portal == nil ? fail("34000") : ["T"]
            case FrontendID.execute:
                guard let portal else { return fail("34000") }
                if portal.contains("fail-exec") { return fail("42000") }
                return ["D:\(Self.tag(of: portal))", "C"]
            case FrontendID.close:
                let kind = payload.readInteger(as: UInt8.self)
                let name = payload.readNullTerminatedString() ?? ""
                if kind == UInt8(ascii: "P") {
                    portal = nil
                } else {
                    checkName(name, in: "Close")
                    statements[name] = nil  // closing an unknown statement is no error
                }
                return ["3"]
            case FrontendID.flush:
                return []
            case FrontendID.sync:
                skipping = false
                portal = nil  // the implicit transaction ends: portals go
                return ["Z:I"]
            case FrontendID.query:
                let sql = payload.readNullTerminatedString() ?? ""
                statements[""] = nil  // a simple query replaces the unnamed statement and portal
                portal = nil
                if sql == "DISCARD ALL" || sql == "DEALLOCATE ALL" {
                    statements.removeAll()
                    return ["C", "Z:I"]
                }
                if sql.contains("fail-exec") { return ["E:42000", "Z:I"] }
                return ["T", "D:\(Self.tag(of: sql))", "C", "Z:I"]
            default:
                violations.append("unexpected message \(message)")
                return []
            }
        }

        private mutating func fail(_ code: String) -> [String] {
            skipping = true
            return ["E:\(code)"]
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
        case "Z:I": return Backend.ready(.idle)
        default:
            if symbol.hasPrefix("E:") { return Backend.error(SQLState(String(symbol.dropFirst(2))), "failure") }
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
        case BackendID.errorResponse:
            return "E:\(message.errorFields["C"] ?? "?")"
        default:
            return String(message.idCharacter)
        }
    }

    /// A short readable form of a client message, for failure reports: `P(s1,'c0-a')`, `B(s1)`, `DS(s1)`, `DP`,
    /// `X` (Execute), `CS(s1)`, `H` (Flush), `S` (Sync), `Q('c0-q5')`. Texts show their tag, and `!p` / `!x` when
    /// they fail at Parse / Execute.
    private static func readable(_ message: WireMessage) -> String {
        var payload = message.payload
        func text(_ sql: String) -> String {
            let failure = sql.contains("fail-parse") ? "!p" : sql.contains("fail-exec") ? "!x" : ""
            return "'\(FakePostgres.tag(of: sql))'" + failure
        }
        switch message.id {
        case FrontendID.parse:
            let name = payload.readNullTerminatedString() ?? ""
            return "P(\(name),\(text(payload.readNullTerminatedString() ?? "")))"
        case FrontendID.bind:
            _ = payload.readNullTerminatedString()
            return "B(\(payload.readNullTerminatedString() ?? ""))"
        case FrontendID.describe:
            let kind = payload.readInteger(as: UInt8.self)
            return kind == UInt8(ascii: "S") ? "DS(\(payload.readNullTerminatedString() ?? ""))" : "DP"
        case FrontendID.execute: return "X"
        case FrontendID.close:
            let kind = payload.readInteger(as: UInt8.self)
            return kind == UInt8(ascii: "S") ? "CS(\(payload.readNullTerminatedString() ?? ""))" : "CP"
        case FrontendID.flush: return "H"
        case FrontendID.sync: return "S"
        case FrontendID.query: return "Q(\(text(payload.readNullTerminatedString() ?? "")))"
        default: return String(message.idCharacter)
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

    private static let names = ["s0", "s1", "s2", "s3"]

    /// The texts client `client` prepares: a few of its own (tagged `c<client>-...`, so their rows are its own),
    /// one failing at Execute and one at Parse, and a few shared by all clients (so clients share server copies;
    /// their rows are checked by position in the client's reply stream).
    private static func texts(client: Int) -> [String] {
        ["SELECT 'c\(client)-a'", "SELECT 'c\(client)-b'", "SELECT 'c\(client)-c'",
         "SELECT 'c\(client)-d' /*fail-exec*/", "SELECT 'c\(client)-e' /*fail-parse*/",
         "SELECT 'all-x'", "SELECT 'all-y'", "SELECT 'all-z' /*fail-exec*/"]
    }

    private struct Script {
        var messages: [ByteBuffer] = []
        /// What a direct Postgres connection answers to `messages`, in order.
        var expected: [String] = []
        /// The statement names the client has at the end, with their texts.
        var statements: [String: String] = [:]
        /// Indices of messages after which the client waits for all its replies before sending more.
        var awaitReady: Set<Int> = []
        /// Ranges of messages (first index: last index) the client sends in one write.
        var oneWrite: [Int: Int] = [:]
        /// ReadyForQuery a direct connection has sent once the client sent messages[..<i].
        var readiesBefore: [Int] = [0]
    }

    /// A random message sequence for `client`, mostly valid (Bind/Describe of statements it has, Parse of free
    /// names, Execute of a bound portal) with some deliberate mistakes (duplicate Parse, unknown names, Execute
    /// without a portal). Built alongside a model of a direct connection, which gives the expected replies. Simple
    /// Queries only between groups unless `queryInsideGroup`. Never depends on the unnamed portal surviving a Sync
    /// or a Query. Ends with a Sync.
    ///
    /// `avoidKnownBugs` (see the minimal reproductions at the end), for a group with a message the server fails
    /// (not the pooler's own 42P05 and 26000): no named Parse or Close after that message; the client sends that
    /// message and the rest of the group up to its Sync in one write (so the error cannot arrive before the Sync is
    /// relayed); and it sends nothing after that Sync until its ReadyForQuery. Bind, Describe and Execute may still
    /// follow the failure, so the pooler's accounting for injected Parse and Close that the server skips is
    /// exercised.
    private static func script(client: Int, steps: ClosedRange<Int>, queryInsideGroup: Bool, avoidKnownBugs: Bool,
                               using rng: inout PoolRandom) -> Script {
        var script = Script()
        var model = FakePostgres()
        var inGroup = false
        var queries = 0, readies = 0
        let texts = texts(client: client)
        // The current group failed on an error the server raises (not the pooler's own 42P05 or 26000), at the
        // message with index `failedAt`.
        var serverFailed = false
        var failedAt: Int?
        func emit(_ message: ByteBuffer) {
            script.messages.append(message)
            for frame in wireMessages(message) {
                let wasSkipping = model.skipping
                let replies = model.handle(frame)
                script.expected += replies
                readies += replies.filter { $0.hasPrefix("Z") }.count
                if model.skipping && !wasSkipping {
                    serverFailed = !replies.contains("E:42P05") && !replies.contains("E:26000")
                    if serverFailed { failedAt = script.messages.count - 1 }
                } else if !model.skipping {
                    serverFailed = false
                }
            }
            script.readiesBefore.append(readies)
            let id = message.getInteger(at: message.readerIndex, as: UInt8.self)
            if id == FrontendID.sync {
                if avoidKnownBugs, let start = failedAt {
                    script.oneWrite[start] = script.messages.count - 1
                    script.awaitReady.insert(script.messages.count - 1)
                }
                failedAt = nil
                inGroup = false
            } else if id != FrontendID.query && id != FrontendID.flush {
                inGroup = true
            }
        }
        func existing() -> String? { model.statements.keys.filter { !$0.isEmpty }.sorted().randomElement(using: &rng) }
        /// A name the client has (mostly), or any name (sometimes unknown: 26000).
        func someName() -> String? {
            if Int.random(in: 0..<10, using: &rng) == 0 { return names.randomElement(using: &rng)! }
            return existing()
        }
        for _ in 0..<Int.random(in: steps, using: &rng) {
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<20 where !(avoidKnownBugs && serverFailed):
                let name = names.randomElement(using: &rng)!
                var text = texts.randomElement(using: &rng)!
                if model.statements[name] != nil {
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0:
                        // A duplicate name: 42P05 (a text that also fails to parse would get 42601 from
                        // Postgres, which checks the syntax first, but 42P05 from the pooler: not worth it).
                        if text.contains("fail-parse") { text = texts[0] }
                    default:
                        emit(Frontend.closeStatement(name))  // the usual pattern: close, then prepare again
                    }
                }
                emit(Frontend.parse(statement: name, text))
            case 20..<36:
                guard let name = someName() else { continue }
                emit(Frontend.bind(statement: name))
            case 36..<44:
                guard let name = someName() else { continue }
                emit(Frontend.describeStatement(name))
            case 44..<50 where model.portal != nil || Int.random(in: 0..<10, using: &rng) == 0:
                emit(describePortal())
            case 50..<64 where model.portal != nil || Int.random(in: 0..<20, using: &rng) == 0:
                emit(Frontend.execute())
            case 64..<70 where !(avoidKnownBugs && serverFailed):
                emit(Frontend.closeStatement(names.randomElement(using: &rng)!))
            case 70..<74:
                emit(Frontend.flush())
            case 74..<88:
                emit(Frontend.sync())
            case 88..<96 where !inGroup || queryInsideGroup:
                queries += 1
                let failure = Int.random(in: 0..<6, using: &rng) == 0 ? " /*fail-exec*/" : ""
                emit(Frontend.query("SELECT 'c\(client)-q\(queries)'\(failure)"))
            default:
                break
            }
        }
        emit(Frontend.sync())
        script.statements = model.statements
        return script
    }

    // MARK: the run

    private struct ServerSim {
        var postgres = FakePostgres(isServer: true)
        var loggedIn: Bool
        var inbox = ByteBuffer()
    }

    /// Runs one seed; returns a failure description, or nil. `trace` prints every step.
    private func run(seed: UInt64, avoidKnownBugs: Bool, trace: Bool = false) -> String? {
        var rng = PoolRandom(seed: seed &+ 0x9E37_79B9_7F4A_7C15)
        let queryInsideGroup = Bool.random(using: &rng)
        let poolSize = Int.random(in: 1...2, using: &rng)
        let clientCount = Int.random(in: 3...4, using: &rng)
        let cacheSize = Int.random(in: 2...3, using: &rng)
        let h = PoolerHarness(PoolerHarness.Options(poolSize: poolSize, statementCacheSize: cacheSize))
        let (first, _) = h.loginFirstClient()
        let clients = [first] + (1..<clientCount).map { _ in h.loginClient() }
        var servers = [ServerSim(loggedIn: true)]

        let scripts = (0..<clientCount).map {
            Self.script(client: $0, steps: 30...90, queryInsideGroup: queryInsideGroup, avoidKnownBugs: avoidKnownBugs,
                        using: &rng)
        }
        var cursors = Array(repeating: 0, count: clientCount)
        var received: [[String]] = Array(repeating: [], count: clientCount)
        var readies = Array(repeating: 0, count: clientCount)
        var clientBytes = Array(repeating: ByteBuffer(), count: clientCount)  // what each client has not read whole
        let runContext = "seed \(seed) (pool \(poolSize), cache \(cacheSize), \(clientCount) clients"
            + (queryInsideGroup ? ", queries inside groups)" : ")")
        func scriptText(_ index: Int) -> String {
            scripts[index].messages.flatMap { wireMessages($0) }.map(Self.readable).joined(separator: " ")
        }

        enum Action { case client(Int), login(Int), answer(Int) }
        var steps = 0
        while true {
            steps += 1
            if steps > 100_000 { return "\(runContext): no quiescence after \(steps) steps" }
            while servers.count < h.connector.connects.count { servers.append(ServerSim(loggedIn: false)) }
            for (index, client) in clients.enumerated() {
                var bytes = client.drainOutbound()
                clientBytes[index].writeBuffer(&bytes)
                let got = Self.completeFrames(&clientBytes[index]).map(Self.symbol(of:))
                if trace && !got.isEmpty { print("TRACE client \(index) got \(got)") }
                received[index] += got
                readies[index] += got.filter { $0.hasPrefix("Z") }.count
            }
            if let (index, violation) = servers.enumerated().lazy
                .compactMap({ i, s in s.postgres.violations.first.map { (i, $0) } }).first {
                return "\(runContext): server \(index): \(violation)"
                    + (0..<clientCount).map { "\n  client \($0) script \(scriptText($0))" }.joined()
            }
            var actions: [Action] = []
            for index in clients.indices where cursors[index] < scripts[index].messages.count {
                // A client waiting for the replies to everything it sent (see `awaitReady`) sends nothing.
                if scripts[index].awaitReady.contains(cursors[index] - 1),
                   readies[index] < scripts[index].readiesBefore[cursors[index]] { continue }
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
                let messages = scripts[index].messages
                var count = min(Int.random(in: 1...4, using: &rng), messages.count - cursors[index])
                if let start = (cursors[index]..<cursors[index] + count).first(where: {
                    scripts[index].oneWrite[$0] != nil }) {
                    count = scripts[index].oneWrite[start]! - cursors[index] + 1  // through that Sync, at once
                }
                if let wait = (cursors[index]..<cursors[index] + count).first(where: {
                    scripts[index].awaitReady.contains($0) }) {
                    count = wait - cursors[index] + 1  // up to the message after which it waits
                }
                var write = ByteBuffer()
                for var message in messages[cursors[index]..<cursors[index] + count] { write.writeBuffer(&message) }
                cursors[index] += count
                if trace {
                    let sent = wireMessages(write).map(Self.readable).joined(separator: " ")
                    print("TRACE client \(index) sends \(sent)")
                }
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
                if trace {
                    let handled = frames.prefix(take).map(Self.readable).joined(separator: " ")
                    print("TRACE server \(index) handles \(handled) -> \(replies)")
                }
                guard !replies.isEmpty else { continue }
                var all = ByteBuffer()
                for symbol in replies {
                    var encoded = Self.encode(symbol)
                    all.writeBuffer(&encoded)
                }
                h.sendSplitAtAnyByte(all, to: h.serverChannels[index], using: &rng)
            }
        }

        // Each client got what a direct connection would have answered, and ends idle with the same statements.
        for index in clients.indices {
            var context: String { runContext + ": client \(index) (script \(scriptText(index)))" }  // only on failure
            let expected = scripts[index].expected
            let own = "D:c\(index)-"
            if let stray = received[index].first(where: {
                $0.hasPrefix("D:c") && !$0.hasPrefix(own) && $0 != "D:?"
            }) {
                return "\(context) got another client's row \(stray)"
            }
            if received[index] != expected {
                let common = zip(received[index], expected).prefix { $0 == $1 }.count
                return "\(context)\n  got      \(received[index])\n  expected \(expected)"
                    + "\n  first difference at reply \(common)"
            }
            guard let handler = h.handler(of: clients[index]) else { return "\(context) gone" }
            if handler.server != nil || handler.waiting {
                return "\(context) not idle (server: \(handler.server != nil), waiting: \(handler.waiting))"
            }
            let has = handler.statements.mapValues { statement in
                statement.definition.getNullTerminatedString(at: statement.definition.readerIndex) ?? "?"
            }
            let should = scripts[index].statements.filter { !$0.key.isEmpty }
            if has != should {
                return "\(context) ends with statements \(has.sorted { $0.key < $1.key }), "
                    + "a direct connection with \(should.sorted { $0.key < $1.key })"
            }
            for (name, statement) in handler.statements
            where h.pool.statementNames.name(for: statement.definition) != statement.serverName {
                return "\(context): \(name) maps to \(statement.serverName), its text to another server name"
            }
        }
        // Every server holds what the pooler caches for it, and nothing it does not know of.
        for (index, server) in servers.enumerated() {
            let connection = h.connector.connects[index].handler
            let held = Set(server.postgres.statements.keys.filter { !$0.isEmpty })
            let allNames = (1...200).map { "PGCAT_\($0)" }  // a run has at most 23 distinct texts
            let cached = Set(allNames.filter { connection.statements.contains($0) })
            if connection.statements.count > cacheSize {
                return "\(runContext): server \(index) caches \(connection.statements.count) > \(cacheSize) statements"
            }
            // (A copy known to be closed first may be gone already, e.g. when its Parse was skipped too: the
            // extra Close is harmless.)
            if !cached.isSubset(of: held) || !held.isSubset(of: cached.union(connection.staleStatements)) {
                return "\(runContext): server \(index) holds \(held.sorted()), the pooler thinks it caches "
                    + "\(cached.sorted()) and must close \(connection.staleStatements.sorted())"
            }
        }
        let counts = h.pool.counts()
        if counts.active != 0 || counts.waiting != 0 {
            return "\(runContext): pool not settled: \(counts)"
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

    private func fuzz(seeds: Range<UInt64>, avoidKnownBugs: Bool) {
        for seed in seeds {
            if let failure = run(seed: seed, avoidKnownBugs: avoidKnownBugs) {
                XCTFail(failure)
                return  // one report, not hundreds
            }
        }
    }

    // MARK: fuzz tests

    /// Fails on the bugs shown by the minimal reproductions below (first at seed 1: after an Execute fails, the
    /// server skips Parses the client and the pooler sent behind it, and later gets a Bind of `PGCAT_11`, which it
    /// never created). Keep it: it is the check that they are fixed.
    func testRandomNamedStatementTrafficIsAnsweredAsByADirectConnection() {
        fuzz(seeds: 0..<32, avoidKnownBugs: false)
    }

    /// The same with the scripts and scheduling of `avoidKnownBugs` (see `script`): everything else about named
    /// statements is checked while those bugs stand, including injected Parses and Closes skipped after an error.
    func testNamedStatementTrafficNotPipelinedPastServerErrorsIsAnsweredAsByADirectConnection() {
        fuzz(seeds: 1000..<1032, avoidKnownBugs: true)
    }

    /// A wider sweep than the two tests above (seeds they do not run), and tools for a failure: add
    /// `NAMED_FUZZ_AVOID=1` for `avoidKnownBugs`; `NAMED_FUZZ_TRACE=<seed>` prints every step of one seed, for
    /// shrinking a failure by hand; `NAMED_FUZZ_SWEEP=<n>` sweeps seeds 0..<n instead of the default 32..<96.
    func testWiderSweepOrOneTracedSeed() {
        let environment = ProcessInfo.processInfo.environment
        let avoid = environment["NAMED_FUZZ_AVOID"] == "1"
        if let seed = environment["NAMED_FUZZ_TRACE"].flatMap(UInt64.init) {
            if let failure = run(seed: seed, avoidKnownBugs: avoid, trace: true) { XCTFail(failure) }
            return
        }
        let seeds = environment["NAMED_FUZZ_SWEEP"].flatMap(UInt64.init).map { 0..<$0 } ?? 32..<96
        var failures = 0
        for seed in seeds {
            guard let failure = run(seed: seed, avoidKnownBugs: avoid) else { continue }
            failures += 1
            print("seed \(seed) fails: " + failure.replacingOccurrences(of: "\n", with: " | "))
        }
        XCTAssertEqual(failures, 0, "of \(seeds.count) seeds")
    }

    // MARK: minimal reproductions

    /// Plays `postgres` on `server` until the pooler sends it nothing more, answering each round in one write.
    private func answer(_ h: PoolerHarness, _ server: EmbeddedChannel, _ postgres: inout FakePostgres) {
        while case let frames = server.drainMessages(), !frames.isEmpty {
            var write = ByteBuffer()
            for frame in frames {
                for symbol in postgres.handle(frame) {
                    var encoded = Self.encode(symbol)
                    write.writeBuffer(&encoded)
                }
            }
            if write.readableBytes > 0 { h.send(write, to: server) }
        }
    }

    private func replies(_ client: EmbeddedChannel) -> [String] { client.drainMessages().map(Self.symbol(of:)) }

    /// Bug (the fuzz test's first find): the pooler registers a client's statement name when it forwards the
    /// Parse, before the server has answered it. A Parse that fails behind a Sync leaves the name registered until
    /// its error arrives, so a pipelined Parse of the same name after that Sync gets 42P05 from the pooler, where
    /// Postgres (the name is free: the first Parse failed) answers ParseComplete.
    func testParseOfANameWhoseEarlierParseFailsBehindASyncIsNoDuplicate() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s1", "SELECT 'a-1' /*fail-parse*/"), Frontend.sync(),
               Frontend.parse(statement: "s1", "SELECT 'a-2'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601", "Z:I", "1", "Z:I"], "as from Postgres: the name is free again")
    }

    /// Bug, same cause: a pipelined Bind of that name after the Sync is sent to the server as a Bind of the failed
    /// `PGCAT_1`, so the server's error names `PGCAT_1` (the client knows no such name; Postgres would name `s1`).
    func testBindOfANameWhoseParseFailsBehindASyncIsRefusedForTheClientsName() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s1", "SELECT 'a-1' /*fail-parse*/"), Frontend.sync(),
               Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601", "Z:I", "E:26000", "Z:I"])
        XCTAssertEqual(postgres.violations, [], "the server never hears of PGCAT_1 after its Parse failed")
    }

    /// Bug, same cause, with injected messages (valid traffic from one client gets an error): with a cache of one
    /// statement, `B(s0)` after a failed message makes the pooler evict s1's copy (injected Close) and re-prepare
    /// s0's; the server skips both. Before that error arrives, `B(s1)` behind the Sync is planned on the assumption
    /// that the Close happened: s1's copy is prepared again without being closed, and the server answers 42P05 for
    /// the pooler's name, which the client gets for its Bind. (The error's accounting, `unclosed` in
    /// `forgetFailedStatements`, comes too late: s1 is cached again by then.)
    func testMessagesBehindTheSyncOfAFailedBatchDoNotRelyOnItsSkippedEvictions() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1, statementCacheSize: 1))
        let (a, server) = h.loginFirstClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s0", "SELECT 'a-0'"), Frontend.parse(statement: "s1", "SELECT 'a-1'"),
               Frontend.sync(), to: a)  // the server holds s1's copy only
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["1", "1", "Z:I"])
        h.send(Frontend.parse("SELECT 'a-2' /*fail-parse*/"), Frontend.bind(statement: "s0"), Frontend.sync(),
               Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601", "Z:I", "2", "D:a-1", "C", "Z:I"])
        XCTAssertEqual(postgres.violations, [])
    }

    /// Bug: a named Parse of a text the server already holds is answered by the pooler (ParseComplete in order) and
    /// registered at once. When an earlier message of the batch fails, Postgres skips that Parse; the pooler drops
    /// its ParseComplete but keeps the name, so the client has a statement Postgres never created.
    func testParseSkippedAfterAnErrorLeavesNoStatementEvenWhenTheServerHoldsItsText() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s0", "SELECT 'a-1'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["1", "Z:I"])
        h.send(Frontend.parse(statement: "s1", "SELECT 'a-2' /*fail-parse*/"),
               Frontend.parse(statement: "s2", "SELECT 'a-1'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601", "Z:I"], "the Parse of s2 is skipped")
        h.send(Frontend.bind(statement: "s2"), Frontend.execute(), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:26000", "Z:I"], "as from Postgres: s2 does not exist")
    }

    /// Bug: Close of a named statement is answered by the pooler, which forgets the name at once. When an earlier
    /// message of the batch fails, Postgres skips that Close and the statement stays; the pooler drops its
    /// CloseComplete but has forgotten the name, so the client's next Bind gets 26000.
    func testCloseSkippedAfterAnErrorKeepsTheStatement() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s0", "SELECT 'a-1'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["1", "Z:I"])
        h.send(Frontend.parse(statement: "s1", "SELECT 'a-2' /*fail-parse*/"), Frontend.closeStatement("s0"),
               Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601", "Z:I"], "the Close is skipped")
        h.send(Frontend.bind(statement: "s0"), Frontend.execute(), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["2", "D:a-1", "C", "Z:I"], "as from Postgres: s0 still exists")
    }

    /// Bug, hitting another client: once a server's ErrorResponse has arrived and before the client's Sync,
    /// `ResponseTracker.append` drops every entry (the server skips those messages), but the pooler still records
    /// what they would have done. Here `a`'s Parse of s2 is skipped by the server, yet its server-side name is cached
    /// as present on the connection; `b` then prepares the same text, gets ParseComplete from the pooler, and its
    /// Bind reaches the server as a Bind of a statement the server never created.
    func testParseSentAfterTheServersErrorArrivedIsNotCachedAsPresent() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse("SELECT 'a-1' /*fail-parse*/"), Frontend.flush(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601"])
        h.send(Frontend.parse(statement: "s2", "SELECT 'all'"), Frontend.sync(), to: a)  // skipped by the server
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["Z:I"])

        h.send(Frontend.parse(statement: "t", "SELECT 'all'"), Frontend.bind(statement: "t"), Frontend.execute(),
               Frontend.sync(), to: b)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(b), ["1", "2", "D:all", "C", "Z:I"])
        XCTAssertEqual(postgres.violations, [])
    }

    /// Bug, same cause, with an eviction: the Close evicting `a`'s statement is skipped by the server but the cache
    /// forgets the statement, so when `b` prepares that text again the server answers 42P05 for the pooler's name.
    func testEvictionCloseSentAfterTheServersErrorArrivedIsNotTakenAsDone() {
        let h = PoolerHarness(PoolerHarness.Options(poolSize: 1, statementCacheSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        var postgres = FakePostgres(isServer: true)
        h.send(Frontend.parse(statement: "s0", "SELECT 'all'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["1", "Z:I"])
        h.send(Frontend.parse("SELECT 'a-1' /*fail-parse*/"), Frontend.flush(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["E:42601"])
        // Evicts s0's server copy (cache size 1) with a Close the server skips.
        h.send(Frontend.parse(statement: "s1", "SELECT 'a-2'"), Frontend.sync(), to: a)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(a), ["Z:I"])

        h.send(Frontend.parse(statement: "t", "SELECT 'all'"), Frontend.bind(statement: "t"), Frontend.execute(),
               Frontend.sync(), to: b)
        answer(h, server, &postgres)
        XCTAssertEqual(replies(b), ["1", "2", "D:all", "C", "Z:I"])
        XCTAssertEqual(postgres.violations, [])
    }
}
