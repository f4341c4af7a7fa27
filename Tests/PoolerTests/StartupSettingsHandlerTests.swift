/// Handler tests for a client's login settings (`options`, startup parameters PostgreSQL takes as settings): a
/// server checks them before the welcome, they follow the client to each server connection it uses, and the next
/// client of that connection gets them reset.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class StartupSettingsHandlerTests: XCTestCase {
    private let timeout = [("options", "-c statement_timeout=5s")]

    private func setConfigReply() -> ByteBuffer {
        concat(Backend.rowDescription(["set_config"]), Backend.dataRow(["5s"]), Backend.commandComplete("SELECT 1"),
               Backend.ready(.idle))
    }

    private func checkQuery() -> ByteBuffer {
        Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', true)")
    }

    /// A later login with `extra` settings, checked on `server` (the pool's one idle connection) and accepted.
    private func loginWithSettings(_ h: PoolerHarness, on server: EmbeddedChannel,
                                   _ extra: [(String, String)]? = nil) -> EmbeddedChannel {
        let client = h.makeClient()
        h.sendStartup(client, extra: extra ?? timeout)
        _ = server.drainOutbound()
        h.send(setConfigReply(), to: server)
        _ = client.drainMessages()
        return client
    }

    /// `client` runs `sql` on `server`, which answers the settings replay first and then with `reply`.
    private func runAfterReplay(_ h: PoolerHarness, _ sql: String, by client: EmbeddedChannel,
                                on server: EmbeddedChannel, reply: ByteBuffer) {
        h.send(Frontend.query(sql), to: client)
        _ = server.drainOutbound()
        h.send(setConfigReply(), to: server)
        _ = server.drainOutbound()
        h.send(reply, to: server)
    }

    func testSettingsAreCheckedOnAServerBeforeTheWelcomeOncePerPool() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let b = h.makeClient()
        h.sendStartup(b, extra: timeout)
        XCTAssertEqual(ids(b.drainMessages()), "R", "no welcome before a server accepted the settings")
        XCTAssertEqual(server.drainOutbound(), checkQuery())
        h.send(setConfigReply(), to: server)
        XCTAssertEqual(b.drainMessages().last?.readyStatus, "I")
        XCTAssertEqual(h.pool.counts().idle, 1, "the connection went back to the pool")

        _ = h.loginClient(extra: timeout)  // (asserts the welcome)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "the same settings are not checked again")
        let c = h.makeClient()
        h.sendStartup(c, extra: [("options", "-c statement_timeout=6s")])
        XCTAssertEqual(ids(c.drainMessages()), "R", "other settings are")
        XCTAssertTrue(server.drainOutbound().readableBytes > 0)
    }

    func testRefusedSettingsFailTheLoginWithTheServersErrorAndKeepTheConnection() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let b = h.makeClient()
        h.sendStartup(b, extra: timeout)
        _ = server.drainOutbound()
        h.send(Backend.error(SQLState("22023"), "invalid value for parameter \"statement_timeout\": \"5s\""),
               Backend.ready(.idle), to: server)
        let messages = b.drainMessages()
        XCTAssertEqual(ids(messages), "RE")
        XCTAssertEqual(messages.last?.errorFields["S"], "FATAL")
        XCTAssertEqual(messages.last?.errorFields["C"], "22023")
        XCTAssertEqual(messages.last?.errorFields["M"], "invalid value for parameter \"statement_timeout\": \"5s\"")
        XCTAssertFalse(b.isActive)
        XCTAssertEqual(h.pool.counts().idle, 1, "the server only refused the statement: its connection is kept")
        XCTAssertTrue(server.isActive)
    }

    func testAServerLostDuringTheCheckFailsTheLoginWith08006() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let b = h.makeClient()
        h.sendStartup(b, extra: timeout)
        server.pipeline.fireChannelInactive()
        h.loop.run()
        let messages = b.drainMessages()
        XCTAssertEqual(messages.last?.errorFields["C"], "08006")
        XCTAssertFalse(b.isActive)
    }

    func testSettingsFollowTheirClientAndAreResetForTheNext() {
        let h = PoolerHarness()
        let (plain, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)

        let select = Frontend.query("SELECT 1")
        let done = concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle))
        h.send(select, to: a)
        XCTAssertEqual(server.drainOutbound(),
                       Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);"),
                       "the client's query waits until the settings are in place")
        h.send(setConfigReply(), to: server)
        XCTAssertEqual(server.drainOutbound(), select)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "the replay's reply reaches nobody")
        h.send(done, to: server)
        XCTAssertEqual(a.drainOutbound(), done)

        h.send(select, to: a)
        XCTAssertEqual(server.drainOutbound(), select, "nothing to replay where the settings are already in place")
        h.send(done, to: server)
        _ = a.drainOutbound()

        h.send(select, to: plain)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("RESET \"statement_timeout\";"))
        h.send(concat(Backend.commandComplete("RESET"), Backend.ready(.idle)), to: server)
        XCTAssertEqual(server.drainOutbound(), select)
        h.send(done, to: server)
        XCTAssertEqual(plain.drainOutbound(), done)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testASetAfterTheSettingsIsUndoneAndTheSettingsAppliedAgain() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)

        runAfterReplay(h, "SET statement_timeout = 1", by: a, on: server,
                       reply: concat(Backend.commandComplete("SET"), Backend.ready(.idle)))
        XCTAssertEqual(server.drainOutbound(), Frontend.query("RESET ALL; RESET SESSION AUTHORIZATION"),
                       "a SET is undone after its transaction (a SET ROLE too)")
        h.send(Backend.commandComplete("RESET"), Backend.commandComplete("RESET"), Backend.ready(.idle), to: server)
        _ = a.drainOutbound()

        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);"))
    }

    func testAClientsDiscardAllIsFollowedByItsLoginSettingsAndTheyAreAppliedAgain() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)
        h.send(Frontend.query("DISCARD ALL"), to: a)
        _ = server.drainOutbound()  // the lease's replay
        h.send(setConfigReply(), to: server)
        // As PostgreSQL's session defaults are the login values: the pooler sets them again once the reset is
        // answered without an error.
        let restore = Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);")
        XCTAssertEqual(server.drainOutbound(), Frontend.query("DISCARD ALL"))
        h.send(Backend.commandComplete("DISCARD ALL"), Backend.ready(.idle), to: server)
        XCTAssertEqual(server.drainOutbound(), restore)
        h.send(setConfigReply(), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "CZ", "the restore's replies are the pooler's own")
        XCTAssertEqual(server.drainOutbound(), Frontend.query("RESET ALL; RESET SESSION AUTHORIZATION"),
                       "the login settings are on the connection again: undone before another client gets it")
        h.send(Backend.commandComplete("RESET"), Backend.commandComplete("RESET"), Backend.ready(.idle), to: server)
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), restore, "the next lease applies them again")
    }

    func testAResetThatFailsIsNotFollowedByARestoreAndTheClientWaitsForItsAnswer() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)
        h.send(concat(Frontend.query("BEGIN"), Frontend.query("RESET ALL"), Frontend.query("SELECT 1")), to: a)
        _ = server.drainOutbound()  // the lease's replay
        h.send(setConfigReply(), to: server)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.query("BEGIN"), Frontend.query("RESET ALL")),
                       "what follows the reset waits for its answer")
        h.send(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction), to: server)
        XCTAssertEqual(server.drainOutbound(), ByteBuffer())
        // The transaction had failed (say): the reset did not run, so nothing is restored.
        h.send(Backend.error(SQLState("25P02"), "current transaction is aborted"), Backend.ready(.failed),
               to: server)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"), "no restore; the client goes on")
        XCTAssertEqual(ids(a.drainMessages()), "CZEZ")
    }

    func testQueryTimeoutCoversAServerThatNeverAnswersTheReplay() {
        let h = PoolerHarness(PoolerHarness.Options(queryTimeout: 1000))
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);"))
        let client = h.runtime.clients.first { $0.sessionSettings.isEmpty == false }!
        client.checkQueryTimeout(limit: 1000, now: .now() + .milliseconds(1500))
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(messages.last?.errorFields["C"], "57014", "the client is not left waiting")
        XCTAssertFalse(a.isActive)
        XCTAssertFalse(server.isActive)
    }

    func testAServerLostDuringTheReplayFailsTheHeldRequestOnceAndTheNextOneRuns() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server)
        h.send(Frontend.query("SELECT 1"), to: a)
        _ = server.drainOutbound()
        server.pipeline.fireChannelInactive()
        h.loop.run()
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ", "one error and one ReadyForQuery for the one request")
        XCTAssertEqual(messages.first?.errorFields["C"], "08006")
        XCTAssertTrue(a.isActive)

        h.send(Frontend.query("SELECT 2"), to: a)  // a new connection: the settings first, then the query
        XCTAssertEqual(h.serverChannels.count, 2)
        let second = h.serverChannels[1]
        h.playServerStartup(second)
        XCTAssertEqual(second.drainOutbound(),
                       Frontend.query("SELECT pg_catalog.set_config(E'statement_timeout', E'5s', false);"))
        h.send(setConfigReply(), to: second)
        XCTAssertEqual(second.drainOutbound(), Frontend.query("SELECT 2"))
    }

    func testARefusedReplayFailsTheRequestAndDiscardsTheConnection() {
        let h = PoolerHarness()
        let (_, server) = h.loginFirstClient()
        let a = loginWithSettings(h, on: server, [("options", "-c role=tenant")])

        h.send(Frontend.query("INSERT INTO t VALUES (1)"), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       Frontend.query("SELECT pg_catalog.set_config(E'role', E'tenant', false);"))
        h.send(Backend.error(SQLState("42501"), "permission denied to set role \"tenant\""), Backend.ready(.idle),
               to: server)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ", "the request fails; the insert never ran")
        XCTAssertEqual(messages.first?.errorFields["C"], "42501")
        XCTAssertEqual(messages.first?.errorFields["S"], "ERROR")
        XCTAssertEqual(server.drainOutbound(), Frontend.terminate(), "the insert never reached the server")
        XCTAssertFalse(server.isActive, "the connection's session state is unknown: it is closed")
        XCTAssertTrue(a.isActive)
        XCTAssertEqual(h.pool.counts().active, 0)
    }
}
