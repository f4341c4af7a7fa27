/// ClientConnection on EmbeddedChannel pairs: a client channel driven with raw protocol bytes and fake server
/// channels (see HandlerTestSupport) on one EmbeddedEventLoop, timers driven by advanceTime. No sockets, no sleeps.
import Config
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class ClientConnectionHandlerTests: XCTestCase {
    private typealias Options = PoolerHarness.Options
    private let nByte = ByteBuffer(bytes: [UInt8(ascii: "N")])

    private func assertError(_ message: WireMessage?, severity: String, code: String, messagePrefix: String? = nil,
                             file: StaticString = #filePath, line: UInt = #line) {
        guard let message, message.id == BackendID.errorResponse else {
            XCTFail("expected an ErrorResponse, got \(String(describing: message))", file: file, line: line)
            return
        }
        let fields = message.errorFields
        XCTAssertEqual(fields["S"], severity, file: file, line: line)
        XCTAssertEqual(fields["C"], code, file: file, line: line)
        if let messagePrefix {
            XCTAssertTrue(fields["M"]?.hasPrefix(messagePrefix) == true,
                          "message \(String(describing: fields["M"])) should start with \(messagePrefix)",
                          file: file, line: line)
        }
    }

    /// Client `client` runs `BEGIN` on `server` and is left inside the transaction (ReadyForQuery(T)).
    private func begin(_ h: PoolerHarness, _ client: EmbeddedChannel, on server: EmbeddedChannel,
                       file: StaticString = #filePath, line: UInt = #line) {
        roundTrip(h, client, "BEGIN", on: server, ending: .inTransaction, file: file, line: line)
    }

    /// `sql` from the client reaches `server` as it is, and its answer (tag = the statement) reaches the client.
    private func roundTrip(_ h: PoolerHarness, _ client: EmbeddedChannel, _ sql: String, on server: EmbeddedChannel,
                           ending status: TransactionStatus = .idle, file: StaticString = #filePath, line: UInt = #line) {
        h.send(Frontend.query(sql), to: client)
        XCTAssertEqual(server.drainOutbound(), Frontend.query(sql), file: file, line: line)
        let reply = concat(Backend.commandComplete(sql), Backend.ready(status))
        h.send(reply, to: server)
        XCTAssertEqual(client.drainOutbound(), reply, file: file, line: line)
    }

    // MARK: 1. SSLRequest, GSSENCRequest

    func testSSLRequestAndGSSENCRequestAreEachAnsweredWithNThenStartupProceeds() {
        let h = PoolerHarness()
        let client = h.makeClient()
        h.send(Frontend.sslRequest(), to: client)
        XCTAssertEqual(client.drainOutbound(), nByte)
        h.send(Frontend.gssEncRequest(), to: client)
        XCTAssertEqual(client.drainOutbound(), nByte)

        h.sendStartup(client)
        let auth = client.drainMessages()
        XCTAssertEqual(ids(auth), "R")
        XCTAssertEqual(auth.first?.payload.getInteger(at: auth.first!.payload.readerIndex, as: Int32.self),
                       AuthenticationCode.ok)
        XCTAssertEqual(h.connector.connects.count, 1)
        h.playServerStartup(h.serverChannels[0])
        XCTAssertEqual(client.drainMessages().last?.readyStatus, "I")
        XCTAssertTrue(client.isActive)
    }

    // MARK: 2. unknown database

    func testUnknownDatabaseIsRefusedWithFatal3D000AndClosed() {
        let h = PoolerHarness()
        let client = h.makeClient()
        h.sendStartup(client, database: "nosuchdb")
        let messages = client.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "3D000", messagePrefix: "no such database")
        XCTAssertFalse(client.isActive)
        XCTAssertEqual(h.connector.connects.count, 0)
        XCTAssertEqual(h.runtime.connectedClients, 0)
    }

    // MARK: 3. oversized startup packet

    func testStartupPacketClaimingMoreThan10000BytesIsRefusedBeforeItsBody() {
        let h = PoolerHarness()
        let client = h.makeClient()
        var header = ByteBuffer()
        header.writeMultipleIntegers(Int32(ProtocolCode.maxStartupPacketLength + 1), ProtocolCode.protocolVersion3)
        h.send(header, to: client)  // the body never comes
        let messages = client.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08P01")
        XCTAssertFalse(client.isActive)
        XCTAssertEqual(h.connector.connects.count, 0)
    }

    // MARK: 4. trust login

    func testTrustLoginReportsServerParametersWithClientOverlayAndItsOwnBackendKey() throws {
        let h = PoolerHarness()
        let client = h.makeClient()
        h.sendStartup(client, extra: [("application_name", "psql-test")])

        let auth = client.drainMessages()
        XCTAssertEqual(ids(auth), "R", "AuthenticationOk, then the pooler borrows a server to learn parameters")
        XCTAssertEqual(auth.first?.payload.getInteger(at: auth.first!.payload.readerIndex, as: Int32.self),
                       AuthenticationCode.ok)
        XCTAssertEqual(h.connector.connects.count, 1)
        XCTAssertEqual(h.connector.connects.first?.host, "pg.test")
        XCTAssertEqual(h.connector.connects.first?.port, 5432)

        let serverKey = BackendKeyData(processID: 4242, secretKey: 99)
        h.playServerStartup(h.serverChannels[0], key: serverKey)
        let welcome = client.drainMessages()
        let parameterCount = PoolerHarness.serverParameters.count
        XCTAssertEqual(ids(welcome), String(repeating: "S", count: parameterCount) + "KZ")

        var expected: [String: String] = [:]
        for (name, value) in PoolerHarness.serverParameters { expected[name] = value }
        expected["application_name"] = "psql-test"
        var reported: [String: String] = [:]
        for message in welcome { if let (name, value) = message.parameterStatus { reported[name] = value } }
        XCTAssertEqual(reported, expected)

        let keyMessage = try XCTUnwrap(welcome.first { $0.id == BackendID.backendKeyData })
        let clientKey = try BackendKeyData.decode(keyMessage.payload)
        XCTAssertNotEqual(clientKey, serverKey, "the client gets its own key, not the server's")
        XCTAssertEqual(clientKey, h.handler(of: client)?.key)
        XCTAssertEqual(welcome.last?.readyStatus, "I")

        XCTAssertTrue(client.isActive)
        XCTAssertEqual(h.pool.counts().idle, 1, "the borrowed connection went back to the pool")
        XCTAssertEqual(h.serverChannels[0].drainOutbound().readableBytes, 0)
    }

    /// A later login is answered from the pool's stored report (its ParameterStatus messages encoded once): the
    /// server's parameters, with what this client set in its startup packet in place of the server's values.
    /// (A reported parameter other than application_name is checked on a server first, once per value set: the
    /// pool here is told it was.)
    func testLaterLoginReportsStoredParametersWithItsOwnOverlay() throws {
        let h = PoolerHarness()
        _ = h.loginFirstClient(extra: [("application_name", "first")])
        h.pool.noteSettingsChecked(StartupSettings.checkKey([SessionSetting(name: "datestyle", value: "German, DMY")]))
        let client = h.makeClient()
        h.sendStartup(client, extra: [("application_name", "second"), ("DateStyle", "German, DMY")])
        let welcome = client.drainMessages()
        XCTAssertEqual(ids(welcome), "R" + String(repeating: "S", count: PoolerHarness.serverParameters.count) + "KZ")
        XCTAssertEqual(h.connector.connects.count, 1, "no server was needed for the second login")

        var expected: [String: String] = [:]
        for (name, value) in PoolerHarness.serverParameters { expected[name] = value }
        expected["application_name"] = "second"
        expected["DateStyle"] = "German, DMY"
        var reported: [String: String] = [:]
        for message in welcome { if let (name, value) = message.parameterStatus { reported[name] = value } }
        XCTAssertEqual(reported, expected)
    }

    // MARK: 5. transaction mode relay

    func testTransactionModeRelaysBytesExactlyAndReleasesTheServer() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()

        let query = Frontend.query("SELECT 1")
        h.send(query, to: a)
        XCTAssertEqual(server.drainOutbound(), query)
        XCTAssertEqual(h.pool.counts().active, 1)

        let reply = concat(Backend.rowDescription(["?column?"]), Backend.dataRow(["1"]),
                           Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(reply, to: server)
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().active, 0)
        XCTAssertEqual(h.pool.counts().idle, 1)

        // A second client reuses the same server connection without a new connect.
        let b = h.loginClient()
        let second = Frontend.query("SELECT 2")
        h.send(second, to: b)
        XCTAssertEqual(h.connector.connects.count, 1)
        XCTAssertEqual(server.drainOutbound(), second)
        let secondReply = concat(Backend.commandComplete("SELECT 0"), Backend.ready(.idle))
        h.send(secondReply, to: server)
        XCTAssertEqual(b.drainOutbound(), secondReply)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
    }

    // MARK: 6. pipelining

    func testPipelinedQueriesKeepTheServerUntilTheLastReadyForQuery() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()

        let q1 = Frontend.query("SELECT 1"), q2 = Frontend.query("SELECT 2")
        h.send(q1, q2, to: a)  // one write
        XCTAssertEqual(server.drainOutbound(), concat(q1, q2))

        h.send(Frontend.query("SELECT 3"), to: b)  // the only connection is a's: b waits
        XCTAssertEqual(h.pool.counts().waiting, 1)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)

        let r1 = concat(Backend.dataRow(["1"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(r1, to: server)
        XCTAssertEqual(a.drainOutbound(), r1)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "not released while SELECT 2 is in flight")
        XCTAssertEqual(b.drainOutbound().readableBytes, 0)
        XCTAssertEqual(h.pool.counts().active, 1)

        let r2 = concat(Backend.dataRow(["2"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(r2, to: server)
        XCTAssertEqual(a.drainOutbound(), r2)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 3"), "released to b after the last reply")
        let r3 = concat(Backend.dataRow(["3"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(r3, to: server)
        XCTAssertEqual(b.drainOutbound(), r3)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    // MARK: 7. extended protocol without Sync

    func testParseDescribeFlushKeepsTheServerUntilSyncAndReadyForQuery() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()

        let first = concat(Frontend.parse("SELECT 1"), Frontend.describeStatement(), Frontend.flush())
        h.send(first, to: a)
        XCTAssertEqual(server.drainOutbound(), first)
        let described = concat(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(),
                               Backend.rowDescription(["?column?"]))
        h.send(described, to: server)
        XCTAssertEqual(a.drainOutbound(), described)
        XCTAssertEqual(h.pool.counts().active, 1, "unsynced: the server stays leased")

        h.send(Frontend.query("SELECT 2"), to: b)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "b waits")

        let second = concat(Frontend.bind(), Frontend.execute(), Frontend.sync())
        h.send(second, to: a)
        XCTAssertEqual(server.drainOutbound(), second)
        let executed = concat(Backend.empty(BackendID.bindComplete), Backend.dataRow(["1"]),
                              Backend.commandComplete("SELECT 1"))
        h.send(executed, to: server)
        XCTAssertEqual(a.drainOutbound(), executed)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "still a's until ReadyForQuery")

        h.send(Backend.ready(.idle), to: server)
        XCTAssertEqual(a.drainOutbound(), Backend.ready(.idle))
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 2"), "released to b")
    }

    // MARK: 8. lone Sync

    func testLoneSyncWithoutServerIsAnsweredLocally() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        for client in [a, b] {
            h.send(Frontend.sync(), to: client)
            let messages = client.drainMessages()
            XCTAssertEqual(ids(messages), "Z")
            XCTAssertEqual(messages.first?.readyStatus, "I")
        }
        XCTAssertEqual(h.connector.connects.count, 1, "only the login's connection")
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
        XCTAssertEqual(h.pool.counts().active, 0)
        // A lone Flush is a no-op.
        h.send(Frontend.flush(), to: a)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
    }

    // MARK: 9. connect_timeout

    func testWaitingPastConnectTimeoutGivesError57014AndKeepsTheClient() {
        let h = PoolerHarness(Options(poolSize: 1, connectTimeout: 1000))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        begin(h, a, on: server)

        h.send(Frontend.query("SELECT 2"), to: b)
        XCTAssertEqual(h.pool.counts().waiting, 1)
        h.loop.advanceTime(by: .milliseconds(999))
        XCTAssertEqual(b.drainOutbound().readableBytes, 0, "not yet")

        h.loop.advanceTime(by: .milliseconds(2))
        let messages = b.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        assertError(messages.first, severity: "ERROR", code: "57014", messagePrefix: "timed out waiting")
        XCTAssertEqual(messages.last?.readyStatus, "I")
        XCTAssertTrue(b.isActive)
        XCTAssertEqual(h.pool.counts().waiting, 0)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "b's query never reached the server")

        // a commits: the connection goes idle (nobody waits), and b can use it afterwards.
        h.send(Frontend.query("COMMIT"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("COMMIT"))
        h.send(concat(Backend.commandComplete("COMMIT"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        h.send(Frontend.query("SELECT 3"), to: b)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 3"))
    }

    // MARK: 10. idle_client_in_transaction_timeout

    func testIdleInTransactionTimeoutRollsBackAndAnswersTheNextQueryWithFatal25P03() {
        let h = PoolerHarness(Options(idleClientInTransactionTimeout: 5000))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)

        h.loop.advanceTime(by: .milliseconds(4999))
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "not yet")
        h.loop.advanceTime(by: .milliseconds(2))
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"))
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "nothing unsolicited")
        XCTAssertEqual(h.pool.counts().idle, 1, "released after the rollback")
        XCTAssertTrue(a.isActive)

        // The rest of the transaction must not run as statements of their own (they would commit): the client
        // is told its session ended, as PostgreSQL's idle_in_transaction_session_timeout does.
        h.send(Frontend.query("INSERT INTO t VALUES (2)"), to: a)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "25P03")
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "the statement was not run")
        XCTAssertFalse(a.isActive)
    }

    /// In session mode the session ends with the timeout: its server connection is reset (DISCARD ALL) before
    /// anyone else gets it, so temporary tables, locks and LISTENs do not reach the next client.
    func testIdleInTransactionTimeoutInSessionModeResetsTheSession() {
        var options = Options(idleClientInTransactionTimeout: 5000)
        options.poolMode = .session
        let h = PoolerHarness(options)
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        h.loop.advanceTime(by: .milliseconds(5001))
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"))
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("DISCARD ALL"))
        h.send(concat(Backend.commandComplete("DISCARD ALL"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testIdleInTransactionTimeoutThenTerminateJustCloses() {
        let h = PoolerHarness(Options(idleClientInTransactionTimeout: 5000))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        h.loop.advanceTime(by: .milliseconds(5001))
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"))
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        h.send(Frontend.terminate(), to: a)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
        XCTAssertFalse(a.isActive)
    }

    // MARK: 10b. query_timeout

    func testQueryTimeoutEndsTheSessionCancelsAndDropsTheServerConnection() {
        let h = PoolerHarness(Options(queryTimeout: 1000))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT pg_sleep(10)"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT pg_sleep(10)"))
        let client = h.runtime.clients[0]

        client.checkQueryTimeout(limit: 1000, now: .now() + .milliseconds(500))
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "within the limit")
        XCTAssertTrue(server.isActive)

        client.checkQueryTimeout(limit: 1000, now: .now() + .milliseconds(1500))
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "57014")
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(h.connector.cancels.count, 1, "the running statement is cancelled")
        XCTAssertFalse(server.isActive, "and its connection is never reused")
        XCTAssertEqual(h.pool.counts().idle, 0)
        XCTAssertEqual(h.pool.counts().active, 0)
    }

    func testQueryTimeoutIgnoresAClientIdleInsideATransaction() {
        let h = PoolerHarness(Options(queryTimeout: 1000))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        h.runtime.clients[0].checkQueryTimeout(limit: 1000, now: .now() + .seconds(60))
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
        XCTAssertTrue(a.isActive)
        XCTAssertTrue(server.isActive)
    }

    // MARK: 10c. backpressure

    /// EmbeddedChannel keeps no autoRead option to look at: the client's record of having paused its server is.
    private func serverReadsPaused(_ h: PoolerHarness, _ client: EmbeddedChannel) -> Bool {
        h.handler(of: client)?.serverReadsPaused ?? false
    }

    func testASlowClientPausesReadsFromItsServerUntilItCatchesUp() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        XCTAssertFalse(serverReadsPaused(h, a))

        a.isWritable = false
        a.pipeline.fireChannelWritabilityChanged()
        XCTAssertTrue(serverReadsPaused(h, a), "the client cannot take more: stop reading the server")

        a.isWritable = true
        a.pipeline.fireChannelWritabilityChanged()
        XCTAssertFalse(serverReadsPaused(h, a))
    }

    func testAClientThatIsNotWritableWhenItGetsAServerPausesItsReads() {
        let h = PoolerHarness()
        let (a, server) = loginWithOneIdleServer(h)

        a.isWritable = false
        a.pipeline.fireChannelWritabilityChanged()  // between transactions: no server to pause yet
        h.send(Frontend.query("SELECT 2"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 2"))
        XCTAssertTrue(serverReadsPaused(h, a), "leased to a client that cannot take more: reads paused at once")

        a.isWritable = true
        a.pipeline.fireChannelWritabilityChanged()
        XCTAssertFalse(serverReadsPaused(h, a))
    }

    // MARK: 11. client disconnects mid-transaction

    func testClientDisconnectInTransactionRollsBackAndReusesTheConnection() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)

        a.close(promise: nil)
        h.loop.run()
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"), "ROLLBACK, and no Terminate")
        XCTAssertEqual(h.pool.counts().idle, 0, "not reusable before the rollback finished")
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        XCTAssertTrue(server.isActive)

        let c = h.loginClient()
        h.send(Frontend.query("SELECT 1"), to: c)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
        XCTAssertEqual(h.connector.connects.count, 1)
        XCTAssertEqual(h.runtime.connectedClients, 1)
    }

    func testClientDisconnectWhileStatementRunsCancelsItAndDropsTheConnection() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT pg_sleep(10)"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT pg_sleep(10)"))

        a.close(promise: nil)
        h.loop.run()
        XCTAssertEqual(h.connector.cancels, [FakeServerConnector.Cancel(
            host: "pg.test", port: 5432, key: BackendKeyData(processID: 4242, secretKey: 99))])
        XCTAssertEqual(ids(server.drainMessages()), "X", "the pooler closes the connection politely")
        XCTAssertFalse(server.isActive)
        XCTAssertEqual(h.pool.counts().idle, 0)
        XCTAssertEqual(h.pool.counts().active, 0)
    }

    // MARK: 12. server connection lost

    func testServerClosingInsideTransactionGivesFatal08006AndClosesTheClient() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))

        server.close(promise: nil)  // while the client waits for its answer: the FATAL is that answer
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08006")
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0, "the connection is discarded")
    }

    /// Idle inside its transaction, the client is sent nothing (libpq may take a FATAL arriving with the last
    /// ReadyForQuery for a notice): its next message is answered with the FATAL.
    func testServerClosingWhileTheClientIsIdleInTransactionAnswersItsNextMessageWithFatal08006() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)

        server.close(promise: nil)
        h.loop.run()
        XCTAssertEqual(ids(a.drainMessages()), "", "nothing is sent to a client that awaits nothing")
        XCTAssertTrue(a.isActive)
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0, "the connection is discarded")

        h.send(Frontend.query("INSERT INTO t VALUES (1)"), to: a)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08006")
        XCTAssertEqual(messages.first?.errorFields["M"]?.hasPrefix("server connection lost inside a transaction"), true)
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0, "no server is checked out for it")
    }

    func testServerClosingOutsideTransactionGivesError08006AndKeepsTheClient() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))

        server.close(promise: nil)
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        assertError(messages.first, severity: "ERROR", code: "08006")
        XCTAssertEqual(messages.last?.readyStatus, "I")
        XCTAssertTrue(a.isActive)
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0, "the connection is discarded")

        assertNextQueryRunsOnASecondConnection(h, a)
    }

    /// A logged-in client whose one query is answered, so that its server connection is back in the pool, idle.
    private func loginWithOneIdleServer(_ h: PoolerHarness, file: StaticString = #filePath,
                                        line: UInt = #line) -> (client: EmbeddedChannel, server: EmbeddedChannel) {
        let (client, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: client)
        _ = server.drainOutbound()
        h.send(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)), to: server)
        _ = client.drainOutbound()
        XCTAssertEqual(h.pool.counts().idle, 1, file: file, line: line)
        return (client, server)
    }

    /// The client's next query opens the pool's second server connection and gets its reply from it.
    private func assertNextQueryRunsOnASecondConnection(_ h: PoolerHarness, _ client: EmbeddedChannel,
                                                        file: StaticString = #filePath, line: UInt = #line) {
        h.send(Frontend.query("SELECT 2"), to: client)
        XCTAssertEqual(h.connector.connects.count, 2, file: file, line: line)
        guard h.serverChannels.count == 2 else { return }
        let fresh = h.serverChannels[1]
        h.playServerStartup(fresh)
        XCTAssertEqual(fresh.drainOutbound(), Frontend.query("SELECT 2"), file: file, line: line)
        let reply = concat(Backend.dataRow(["2"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(reply, to: fresh)
        XCTAssertEqual(client.drainOutbound(), reply, file: file, line: line)
    }

    /// The first bytes of the FATAL a backend sends when the server shuts down: a frame cut by the read.
    private var cutShutdownFatal: ByteBuffer {
        var fatal = ByteBuffer()
        MessageEncoder.errorResponse(severity: .fatal, state: .adminShutdown,
                                     message: "terminating connection due to administrator command", into: &fatal)
        return fatal.getSlice(at: 0, length: 20)!
    }

    /// A FATAL the server sends as it shuts down, right after a transaction's last ReadyForQuery and cut by the
    /// read: before, its first part went to the client and the next transaction's bytes completed it ("message
    /// contents do not agree with length"). Now nothing of it reaches the client and the connection is discarded.
    func testAFrameCutAfterTheLastReadyForQueryReachesNoClientAndTheConnectionIsDiscarded() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("COMMIT"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("COMMIT"))

        let reply = concat(Backend.commandComplete("COMMIT"), Backend.ready(.idle))
        h.send(concat(reply, cutShutdownFatal), to: server)
        XCTAssertEqual(a.drainOutbound(), reply, "the transaction's reply, and nothing of the cut frame")
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0, "the connection is discarded")
        assertNextQueryRunsOnASecondConnection(h, a)  // the rest of the cut frame reaches nobody
    }

    /// A new server connection whose first ReadyForQuery comes with more than notices (here the start of a FATAL as
    /// the server shuts down) is not used: before, the rest of its read was dropped and the connection pooled.
    func testAServerConnectionWithAFrameAfterItsFirstReadyForQueryIsNotUsed() {
        var options = Options()
        options.poolSize = 2
        let h = PoolerHarness(options)
        let (a, first) = h.loginFirstClient()
        h.send(Frontend.query("BEGIN"), to: a)
        XCTAssertEqual(first.drainOutbound(), Frontend.query("BEGIN"))
        h.send(concat(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction)), to: first)
        _ = a.drainOutbound()

        let b = h.loginClient()
        h.send(Frontend.query("SELECT 2"), to: b)
        XCTAssertEqual(h.connector.connects.count, 2, "the first connection is in a transaction: a second opens")
        let second = h.serverChannels[1]
        var startup = second.drainOutbound()
        XCTAssertNotNil(try? StartupPacket.decode(from: &startup))
        h.send(concat(Backend.authenticationOK(), Backend.backendKeyData(BackendKeyData(processID: 7, secretKey: 7)),
                      Backend.ready(.idle), cutShutdownFatal), to: second)
        XCTAssertFalse(second.isActive, "the connection is closed")
        XCTAssertEqual(second.drainOutbound(), Frontend.terminate(), "and nothing but a Terminate was sent on it")
        XCTAssertEqual(b.drainOutbound().readableBytes, 0, "the client still waits")

        h.send(Frontend.query("COMMIT"), to: a)
        XCTAssertEqual(first.drainOutbound(), Frontend.query("COMMIT"))
        h.send(concat(Backend.commandComplete("COMMIT"), Backend.ready(.idle)), to: first)
        XCTAssertEqual(first.drainOutbound(), Frontend.query("SELECT 2"), "its query runs on the first connection")
    }

    /// Whole notices after the last ReadyForQuery still go to the client, and the connection back to the pool.
    func testWholeNoticesAfterTheLastReadyForQueryReachTheClientAndTheServerIsKept() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: a)
        _ = server.drainOutbound()

        var notice = ByteBuffer()
        MessageEncoder.errorResponse(severity: .notice, state: SQLState("00000"), message: "late notice",
                                     id: BackendID.noticeResponse, into: &notice)
        let reply = concat(Backend.commandComplete("SELECT 0"), Backend.ready(.idle), notice)
        h.send(reply, to: server)
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    /// A FATAL reaching a connection idle in the pool: the connection goes, so the next client never reads it.
    func testAFatalWhileIdleInThePoolClosesTheConnection() {
        let h = PoolerHarness()
        let (a, server) = loginWithOneIdleServer(h)

        h.send(cutShutdownFatal, to: server)
        XCTAssertFalse(server.isActive)
        XCTAssertEqual(h.pool.counts().idle + h.pool.counts().active, 0)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
    }

    // MARK: 13. max_message_size

    func testMessageLargerThanMaxMessageSizeIsRefusedWithFatal08P01() {
        let h = PoolerHarness(Options(maxMessageSize: 1024))
        let (a, server) = h.loginFirstClient()
        var big = ByteBuffer()
        big.writeInteger(FrontendID.query)
        big.writeInteger(Int32(4 + 4096))
        big.writeString("SELECT ")  // the rest never comes: refused on the header alone
        h.send(big, to: a)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08P01")
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
    }

    func testMessageLargerThanMaxMessageSizeInsideTransactionIsRefusedAndTheServerRolledBack() {
        let h = PoolerHarness(Options(maxMessageSize: 1024))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        var big = ByteBuffer()
        big.writeInteger(FrontendID.query)
        big.writeInteger(Int32(4 + 4096))
        big.writeString("INSERT ")
        h.send(big, to: a)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08P01")
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"), "none of the oversized message is sent")
    }

    // MARK: 14. Terminate

    func testTerminateIsNotForwardedInTransactionMode() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
        h.send(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)), to: server)
        _ = a.drainOutbound()

        h.send(Frontend.terminate(), to: a)
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
        XCTAssertTrue(server.isActive)
        XCTAssertEqual(h.pool.counts().idle, 1)
        XCTAssertEqual(h.runtime.connectedClients, 0)
    }

    func testTerminateInsideTransactionRollsBackWithoutForwardingTerminate() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)

        h.send(Frontend.terminate(), to: a)
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"))
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        XCTAssertTrue(server.isActive)
    }

    // MARK: more: parameters, cancel

    func testClientParametersAreReplayedWithSetAndTheReplyIsSwallowed() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient(extra: [("application_name", "psql-test")])
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.query("SET application_name TO E'psql-test';"), Frontend.query("SELECT 1")))
        h.send(concat(Backend.parameterStatus("application_name", "psql-test"), Backend.commandComplete("SET"),
                      Backend.ready(.idle)), to: server)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "the SET's reply is the pooler's")
        XCTAssertEqual(h.pool.counts().active, 1, "the client's query is still running")
        let reply = concat(Backend.dataRow(["1"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(reply, to: server)
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().idle, 1)

        // The server now has the client's value: no second SET.
        h.send(Frontend.query("SELECT 2"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 2"))
    }

    func testCancelRequestWithTheClientsKeyGoesToItsServerBackend() throws {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        let key = try XCTUnwrap(h.handler(of: a)?.key)

        // Unknown keys are ignored; a client without a server has nothing to cancel.
        let stranger = h.makeClient()
        h.send(Frontend.cancelRequest(BackendKeyData(processID: key.processID &+ 1, secretKey: key.secretKey)),
               to: stranger)
        XCTAssertFalse(stranger.isActive)
        XCTAssertEqual(h.connector.cancels, [])

        h.send(Frontend.query("SELECT pg_sleep(10)"), to: a)
        _ = server.drainOutbound()
        let canceller = h.makeClient()
        h.send(Frontend.cancelRequest(key), to: canceller)
        XCTAssertFalse(canceller.isActive)
        XCTAssertEqual(canceller.drainOutbound().readableBytes, 0)
        XCTAssertEqual(h.connector.cancels, [FakeServerConnector.Cancel(
            host: "pg.test", port: 5432, key: BackendKeyData(processID: 4242, secretKey: 99))])
        XCTAssertTrue(a.isActive)
    }

    // MARK: more: fragmentation, pipelined startup, limits, shutdown, session mode

    func testMessagesSplitIntoSingleBytesAreRelayedExactly() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        let query = Frontend.query("SELECT 'hello'")
        for byte in query.readableBytesView { h.send(ByteBuffer(bytes: [byte]), to: a) }
        XCTAssertEqual(server.drainOutbound(), query)

        let reply = concat(Backend.rowDescription(["?column?"]), Backend.dataRow(["hello"]),
                           Backend.parameterStatus("TimeZone", "UTC"), Backend.commandComplete("SELECT 1"),
                           Backend.ready(.idle))
        for byte in reply.readableBytesView { h.send(ByteBuffer(bytes: [byte]), to: server) }
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testQuerySentWithTheStartupPacketOfALaterClientRunsAfterTheWelcome() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let b = h.makeClient()
        h.send(Frontend.startup([("user", PoolerHarness.user), ("database", PoolerHarness.database)]),
               Frontend.query("SELECT 1"), to: b)
        XCTAssertEqual(b.drainMessages().last?.readyStatus, "I")
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
    }

    /// The first client's login borrows a server connection to learn the parameters; a Query the client sent
    /// together with its startup packet runs on that connection right after the welcome, and must be flushed to
    /// the server although no client read follows (the lease arrives during the server's read).
    func testQuerySentWithTheStartupPacketOfTheFirstClientIsFlushedToTheServer() {
        let h = PoolerHarness()
        let client = h.makeClient()
        h.send(Frontend.startup([("user", PoolerHarness.user), ("database", PoolerHarness.database)]),
               Frontend.query("SELECT 1"), to: client)
        XCTAssertEqual(ids(client.drainMessages()), "R")
        let server = h.serverChannels[0]
        h.playServerStartup(server)
        XCTAssertEqual(client.drainMessages().last?.readyStatus, "I")
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
    }

    func testCancelRequestWhileWaitingForAServerCancelsTheRequest() throws {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        begin(h, a, on: server)
        h.send(Frontend.query("SELECT 2"), to: b)
        XCTAssertEqual(h.pool.counts().waiting, 1)

        let canceller = h.makeClient()
        h.send(Frontend.cancelRequest(try XCTUnwrap(h.handler(of: b)?.key)), to: canceller)
        let messages = b.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        assertError(messages.first, severity: "ERROR", code: "57014", messagePrefix: "canceling statement")
        XCTAssertEqual(messages.last?.readyStatus, "I")
        XCTAssertTrue(b.isActive)
        XCTAssertEqual(h.pool.counts().waiting, 0)
        XCTAssertEqual(h.connector.cancels, [], "nothing ran on a server")
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
    }

    func testServerLostWithUnsyncedExtendedExchangeErrorsThenSkipsToSync() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        let first = concat(Frontend.parse("SELECT 1"), Frontend.describeStatement(), Frontend.flush())
        h.send(first, to: a)
        XCTAssertEqual(server.drainOutbound(), first)

        server.close(promise: nil)
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E", "no ReadyForQuery before the client's Sync")
        assertError(messages.first, severity: "ERROR", code: "08006")
        XCTAssertTrue(a.isActive)

        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: a)
        let rest = a.drainMessages()
        XCTAssertEqual(ids(rest), "Z")
        XCTAssertEqual(rest.first?.readyStatus, "I")
        XCTAssertEqual(h.connector.connects.count, 1, "the skipped messages opened no connection")
    }

    /// The same while the pooler's own parameter replay is still unanswered: it is owed no ReadyForQuery, so the
    /// client gets none before its Sync (asyncpg failed on a ReadyForQuery in the middle of its prepare).
    func testServerLostDuringAReplayOwesTheClientNoReadyForQuery() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient(extra: [("application_name", "psql-test")])
        let first = concat(Frontend.parse("SELECT 1"), Frontend.describeStatement(), Frontend.flush())
        h.send(first, to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.query("SET application_name TO E'psql-test';"), first))

        server.close(promise: nil)
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "E", "no ReadyForQuery before the client's Sync")
        assertError(messages.first, severity: "ERROR", code: "08006")
        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(ids(a.drainMessages()), "Z")
    }

    func testMaxClientConnRefusesTheNextClientWithFatal53300() {
        let h = PoolerHarness(Options(maxClientConn: 1))
        let (a, _) = h.loginFirstClient()
        let b = h.makeClient()
        h.sendStartup(b)
        let messages = b.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "53300")
        XCTAssertFalse(b.isActive)
        XCTAssertTrue(a.isActive)
        XCTAssertEqual(h.runtime.connectedClients, 1)

        h.send(Frontend.terminate(), to: a)
        _ = h.loginClient()  // room again
        XCTAssertEqual(h.runtime.connectedClients, 1)
    }

    func testShutdownClosesIdleClientsNowAndBusyOnesAfterTheirTransaction() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        begin(h, a, on: server)

        h.runtime.beginShutdown()
        h.loop.run()
        let idle = b.drainMessages()
        XCTAssertEqual(ids(idle), "E")
        assertError(idle.first, severity: "FATAL", code: "57P01")
        XCTAssertFalse(b.isActive)
        XCTAssertTrue(a.isActive, "inside a transaction: may finish it")
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)

        let late = h.makeClient()
        h.sendStartup(late)
        assertError(late.drainMessages().first, severity: "FATAL", code: "57P01")
        XCTAssertFalse(late.isActive)

        h.send(Frontend.query("COMMIT"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("COMMIT"))
        let reply = concat(Backend.commandComplete("COMMIT"), Backend.ready(.idle))
        h.send(reply, to: server)
        let end = a.drainMessages()
        XCTAssertEqual(ids(end), "CZE")
        assertError(end.last, severity: "FATAL", code: "57P01")
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testSessionModeKeepsTheServerAndResetsItWithDiscardAllWhenTheClientLeaves() {
        let h = PoolerHarness(Options(poolSize: 1, poolMode: .session))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
        let reply = concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(reply, to: server)
        XCTAssertEqual(a.drainOutbound(), reply)
        XCTAssertEqual(h.pool.counts().active, 1, "session mode: still the client's")

        h.send(Frontend.terminate(), to: a)
        XCTAssertFalse(a.isActive)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("DISCARD ALL"), "reset, and Terminate not forwarded")
        h.send(concat(Backend.commandComplete("DISCARD ALL"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        XCTAssertTrue(server.isActive)
    }

    /// `idle_timeout` counts from the connection's return to the pool, not from the last reply the client got: a
    /// session that sat idle longer than the timeout must not hand back a connection the next sweep closes.
    func testConnectionReturnedAfterALongSessionIsIdleFromItsReturn() {
        var options = Options(poolSize: 1, poolMode: .session)
        options.idleTimeout = 250
        let h = PoolerHarness(options)
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"))
        h.send(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)), to: server)
        _ = a.drainOutbound()
        usleep(400_000)  // the client idles past idle_timeout, holding its server (session mode)

        h.send(Frontend.terminate(), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("DISCARD ALL"))
        h.send(concat(Backend.commandComplete("DISCARD ALL"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        h.runtime.sweep(loops: { h.loop })
        h.loop.run()
        XCTAssertEqual(h.pool.counts().idle, 1, "just returned: not idle for 250 ms yet")
        XCTAssertTrue(server.isActive)
    }

    // MARK: check before use

    /// A connection idle longer than `healthcheck_delay` gets an empty query before the client's statement; one
    /// that answers carries the statement, one that does not answer within `healthcheck_timeout` (a stopped
    /// backend) is closed and the statement goes to a new connection.
    private func idleLongerThanTheCheckDelay(connectTimeout: Int = 1000, checkTimeout: Int = 500)
        -> (PoolerHarness, EmbeddedChannel, EmbeddedChannel) {
        var options = Options(poolSize: 2)
        options.connectTimeout = connectTimeout
        options.healthcheckDelay = 400  // (wall clock: the sweep reads the real time)
        options.healthcheckTimeout = checkTimeout
        let h = PoolerHarness(options)
        let (a, server) = h.loginFirstClient()
        roundTrip(h, a, "SELECT 1", on: server)
        h.runtime.sweep(loops: { h.loop })
        h.loop.run()
        roundTrip(h, a, "SELECT 2", on: server)  // idle for less than the delay: no check
        usleep(500_000)
        h.runtime.sweep(loops: { h.loop })
        h.loop.run()
        h.send(Frontend.query("SELECT 3"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query(";"), "checked before the statement")
        XCTAssertEqual(a.drainOutbound().readableBytes, 0)
        return (h, a, server)
    }

    func testAConnectionIdleLongerThanTheCheckDelayIsCheckedBeforeUse() {
        let (h, a, server) = idleLongerThanTheCheckDelay()
        h.send(concat(Backend.empty(BackendID.emptyQueryResponse), Backend.ready(.idle)), to: server)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 3"))
        h.send(concat(Backend.commandComplete("SELECT 3"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "CZ")
        h.send(Frontend.query("SELECT 4"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 4"), "checked once, not again")
    }

    /// The client stops waiting while its connection is checked (its connect_timeout here): it gets its 57014
    /// at once, and the connection, once it passes, goes back to the pool instead of to a client that left.
    func testAWaitThatEndsDuringTheCheckWithdrawsTheClient() {
        let (h, a, server) = idleLongerThanTheCheckDelay(connectTimeout: 200, checkTimeout: 1000)
        h.loop.advanceTime(by: .milliseconds(201))
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        assertError(messages.first, severity: "ERROR", code: "57014")
        XCTAssertTrue(messages.first?.errorFields["M"]?.contains("check before use") == true,
                      "\(String(describing: messages.first?.errorFields))")
        h.send(concat(Backend.empty(BackendID.emptyQueryResponse), Backend.ready(.idle)), to: server)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "the statement was not sent")
        XCTAssertEqual(h.pool.counts().idle, 1, "back in the pool")
        h.send(Frontend.query("SELECT 5"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 5"), "and the client's next request gets it")
    }

    func testAConnectionThatFailsItsCheckIsReplaced() {
        let (h, a, server) = idleLongerThanTheCheckDelay()
        h.loop.advanceTime(by: .milliseconds(501))  // the backend never answers
        XCTAssertFalse(server.isActive, "closed")
        XCTAssertEqual(h.serverChannels.count, 2, "a new connection is opened for the statement")
        let fresh = h.serverChannels[1]
        h.playServerStartup(fresh)
        XCTAssertEqual(fresh.drainOutbound(), Frontend.query("SELECT 3"))
        h.send(concat(Backend.commandComplete("SELECT 3"), Backend.ready(.idle)), to: fresh)
        XCTAssertEqual(ids(a.drainMessages()), "CZ")
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    // MARK: more: cleanup of unsynced exchanges, COPY, server login failures

    func testClientDisconnectWithUnsyncedExtendedExchangeInTransactionSendsSyncThenRollback() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        begin(h, a, on: server)
        let unsynced = concat(Frontend.parse("INSERT INTO t VALUES (1)"), Frontend.bind(), Frontend.execute(),
                              Frontend.flush())
        h.send(unsynced, to: a)
        XCTAssertEqual(server.drainOutbound(), unsynced)

        a.close(promise: nil)
        h.loop.run()
        XCTAssertEqual(server.drainOutbound(), Frontend.sync(), "first the Sync that ends the exchange")
        h.send(concat(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
                      Backend.commandComplete("INSERT 0 1"), Backend.ready(.inTransaction)), to: server)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("ROLLBACK"))
        XCTAssertEqual(h.pool.counts().idle, 0)
        h.send(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(h.pool.counts().idle, 1)
        XCTAssertEqual(h.connector.cancels, [])
    }

    func testCopyFromStdinIsRelayedAndTheServerReleasedAfterwards() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("COPY t FROM STDIN"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("COPY t FROM STDIN"))
        h.send(Backend.copyInResponse(), to: server)
        XCTAssertEqual(a.drainOutbound(), Backend.copyInResponse())

        let data = concat(Frontend.copyData("1\n"), Frontend.copyData("2\n"), Frontend.copyDone())
        h.send(data, to: a)
        XCTAssertEqual(server.drainOutbound(), data)
        XCTAssertEqual(h.pool.counts().active, 1)
        let done = concat(Backend.commandComplete("COPY 2"), Backend.ready(.idle))
        h.send(done, to: server)
        XCTAssertEqual(a.drainOutbound(), done)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testExtendedProtocolCopyFromStdinReleasesAfterTheSecondSync() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        let start = concat(Frontend.parse("COPY t FROM STDIN"), Frontend.bind(), Frontend.execute(), Frontend.sync())
        h.send(start, to: a)
        XCTAssertEqual(server.drainOutbound(), start)
        let copyIn = concat(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
                            Backend.copyInResponse())
        h.send(copyIn, to: server)  // the server ignores the Sync while in COPY FROM
        XCTAssertEqual(a.drainOutbound(), copyIn)

        let data = concat(Frontend.copyData("1\n"), Frontend.copyDone(), Frontend.sync())
        h.send(data, to: a)
        XCTAssertEqual(server.drainOutbound(), data)
        let done = concat(Backend.commandComplete("COPY 1"), Backend.ready(.idle))
        h.send(done, to: server)
        XCTAssertEqual(a.drainOutbound(), done)
        XCTAssertEqual(h.pool.counts().idle, 1, "released: the only ReadyForQuery owed has come")
    }

    func testCopyToStdoutIsRelayed() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("COPY t TO STDOUT"), to: a)
        _ = server.drainOutbound()
        let out = concat(Backend.copyOutResponse(), Backend.copyData("1\n"), Backend.copyData("2\n"),
                         Backend.empty(BackendID.copyDone), Backend.commandComplete("COPY 2"), Backend.ready(.idle))
        h.send(out, to: server)
        XCTAssertEqual(a.drainOutbound(), out)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testLoginWhoseServerNeverAnswersTimesOutWithFatal57014() {
        let h = PoolerHarness(Options(connectTimeout: 1000))
        let client = h.makeClient()
        h.sendStartup(client)
        XCTAssertEqual(ids(client.drainMessages()), "R")
        let server = h.serverChannels[0]
        XCTAssertGreaterThan(server.drainOutbound().readableBytes, 0, "the StartupMessage")

        h.loop.advanceTime(by: .milliseconds(1001))
        let messages = client.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "57014")
        XCTAssertFalse(client.isActive)
        XCTAssertEqual(h.runtime.connectedClients, 0)

        // The unanswered server login is given up a little later (connect timeout + 250 ms) and closed.
        h.loop.advanceTime(by: .milliseconds(260))
        XCTAssertFalse(server.isActive)
        XCTAssertEqual(h.pool.counts().connecting, 0)
    }

    func testServerRefusingTheLoginGivesTheClientFatal08006() {
        let h = PoolerHarness()
        let client = h.makeClient()
        h.sendStartup(client)
        _ = client.drainOutbound()
        let server = h.serverChannels[0]
        _ = server.drainOutbound()
        h.send(Backend.fatal(.invalidPassword, "password authentication failed for user \"alice\""), to: server)
        let messages = client.drainMessages()
        XCTAssertEqual(ids(messages), "E")
        assertError(messages.first, severity: "FATAL", code: "08006")
        XCTAssertFalse(client.isActive)
        XCTAssertFalse(server.isActive)
        XCTAssertEqual(h.pool.counts().connecting, 0)
    }

    /// A refused connect must fail the connection's startup promise (the handler never becomes active) and the
    /// waiting client gets ERROR 08006, not a hang or a crash (a leaked promise stops a debug build).
    func testUnreachableServerGivesError08006AndKeepsTheClient() {
        let h = PoolerHarness()
        let (a, server) = h.loginFirstClient()
        server.close(promise: nil)  // the only connection dies while idle in the pool
        h.loop.run()
        XCTAssertEqual(h.pool.counts().idle, 0)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "nothing to tell an idle client")

        h.connector.refuseConnections = true
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(h.connector.refused, 1)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        assertError(messages.first, severity: "ERROR", code: "08006")
        XCTAssertEqual(messages.last?.readyStatus, "I")
        XCTAssertTrue(a.isActive)

        h.connector.refuseConnections = false
        h.send(Frontend.query("SELECT 2"), to: a)
        XCTAssertEqual(h.connector.connects.count, 2)
        let fresh = h.serverChannels[1]
        h.playServerStartup(fresh)
        XCTAssertEqual(fresh.drainOutbound(), Frontend.query("SELECT 2"))
    }
}
