/// Handler tests for the session-state rules of transaction mode: a stale cached plan is re-prepared and its batch
/// retried invisibly; operations that outlive a transaction pin the client to its server connection.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class SessionStateHandlerTests: XCTestCase {
    typealias Options = PoolerHarness.Options

    private func describePortal() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.describe, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "P"))
            $0.writeNullTerminatedString("")
        }
        return buffer
    }

    private func serverParse(_ name: String, _ sql: String) -> ByteBuffer { Frontend.parse(statement: name, sql) }

    private let stalePlan = Backend.error(SQLState("0A000"), "cached plan must not change result type")

    /// Client `a` prepares `s1` as PGCAT_1 on `server`.
    private func prepare(_ h: PoolerHarness, _ a: EmbeddedChannel, on server: EmbeddedChannel) {
        h.send(Frontend.parse(statement: "s1", "SELECT * FROM t"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(serverParse("PGCAT_1", "SELECT * FROM t"), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1Z")
    }

    /// A client that prepared s1 and sent Bind/Execute/Sync of it, with the server's copy of those drained.
    private func executingPreparedS1() -> (PoolerHarness, EmbeddedChannel, EmbeddedChannel) {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepare(h, a, on: server)
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        _ = server.drainOutbound()
        return (h, a, server)
    }

    func testStalePlanIsReprepardAndTheBatchRetriedWithoutTheClientSeeingIt() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepare(h, a, on: server)

        let batch = concat(Frontend.bind(statement: "s1"), describePortal(), Frontend.execute(), Frontend.sync())
        let renamed = concat(Frontend.bind(statement: "PGCAT_1"), describePortal(), Frontend.execute(), Frontend.sync())
        h.send(batch, to: a)
        XCTAssertEqual(server.drainOutbound(), renamed)
        h.send(stalePlan, Backend.ready(.idle), to: server)
        XCTAssertEqual(a.drainOutbound().readableBytes, 0, "the error is held back")
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.closeStatement("PGCAT_1"), serverParse("PGCAT_1", "SELECT * FROM t"), renamed),
                       "the stale copy is closed, prepared again, and the batch sent again")
        XCTAssertEqual(h.pool.counts().active, 1, "the retry keeps the server")

        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.empty(BackendID.bindComplete), Backend.rowDescription(["id", "added"]),
               Backend.dataRow(["1", "x"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "2TDCZ", "only the answer to the client's own batch")
        XCTAssertEqual(h.pool.counts().idle, 1)
    }

    func testServerErrorsNameTheClientsStatementNotThePoolersName() {
        let (h, a, server) = executingPreparedS1()
        h.send(Backend.error(SQLState("08P01"), "bind message supplies 0 parameters, but prepared statement \"PGCAT_1\" requires 1"),
               Backend.ready(.idle), to: server)
        let reply = a.drainMessages()
        XCTAssertEqual(ids(reply), "EZ")
        XCTAssertEqual(reply.first?.errorFields["M"], "bind message supplies 0 parameters, but prepared statement \"s1\" requires 1")
        XCTAssertEqual(reply.first?.errorFields["C"], "08P01")
    }

    func testAStalePlanAfterAParameterDescriptionIsNotRetried() {
        // Describe of the statement: the server sends ParameterDescription before it finds the plan stale. A retry
        // would send the client a second one (asyncpg then fails); the client gets the error instead.
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepare(h, a, on: server)
        h.send(Frontend.describeStatement("s1"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.describeStatement("PGCAT_1"), Frontend.sync()))
        h.send(Backend.parameterDescription(), stalePlan, Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "tEZ")
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "nothing sent again")
        // The client's own retry finds a fresh copy.
        h.send(Frontend.describeStatement("s1"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), serverParse("PGCAT_1", "SELECT * FROM t"),
                                                      Frontend.describeStatement("PGCAT_1"), Frontend.sync()))
    }

    func testStalePlanInsideATransactionReachesTheClientAndTheNextUseReprepares() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepare(h, a, on: server)
        h.send(Frontend.query("BEGIN"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("BEGIN"))
        h.send(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction), to: server)
        _ = a.drainOutbound()

        let batch = concat(Frontend.bind(statement: "s1"), describePortal(), Frontend.execute(), Frontend.sync())
        h.send(batch, to: a)
        _ = server.drainOutbound()
        h.send(stalePlan, Backend.ready(.failed), to: server)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "EZ", "a transaction block cannot be retried: the client gets the error")
        XCTAssertEqual(messages.first?.errorFields["C"], "0A000")
        XCTAssertEqual(messages.last?.readyStatus, "E")

        h.send(Frontend.query("ROLLBACK"), to: a)
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle), to: server)
        _ = a.drainOutbound()
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.closeStatement("PGCAT_1"), serverParse("PGCAT_1", "SELECT * FROM t"),
                              Frontend.bind(statement: "PGCAT_1"), Frontend.execute(), Frontend.sync()))
    }

    func testStalePlanWithoutDescribeIsNotRetried() {
        let (h, a, server) = executingPreparedS1()
        h.send(stalePlan, Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "EZ",
                       "the client holds the old row description: it must see the error, as from Postgres")
        XCTAssertEqual(server.drainOutbound().readableBytes, 0)
    }

    func testSkippedEvictionIsClosedBeforeTheStatementIsPreparedAgain() {
        // Cache size 1: preparing s2 evicts PGCAT_1 with a Close that an earlier error makes the server skip.
        let h = PoolerHarness(Options(poolSize: 1, statementCacheSize: 1))
        let (a, server) = h.loginFirstClient()
        prepare(h, a, on: server)
        h.send(Frontend.query("SELECT 1"), to: a)  // keeps nothing; just a round trip
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        _ = a.drainOutbound()

        // The client never parsed an unnamed statement: the pooler closes the server's (someone else's) first, so
        // the Bind fails as on Postgres.
        h.send(Frontend.bind(), Frontend.execute(), Frontend.parse(statement: "s2", "SELECT 2"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.closeStatement(""), Frontend.bind(), Frontend.execute(), Frontend.closeStatement("PGCAT_1"),
                              serverParse("PGCAT_2", "SELECT 2"), Frontend.sync()))
        h.send(Backend.empty(BackendID.closeComplete), Backend.error(SQLState("26000"), "no unnamed statement"),
               Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "EZ")

        // s1 is still the client's; PGCAT_1 still exists on the server, so it is closed before being prepared.
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.closeStatement("PGCAT_1"), serverParse("PGCAT_1", "SELECT * FROM t"),
                              Frontend.bind(statement: "PGCAT_1"), Frontend.execute(), Frontend.sync()))
    }

    func testListenPinsTheClientUntilItLeavesThenDiscardAll() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        h.send(Frontend.query("LISTEN jobs"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("LISTEN jobs"))
        h.send(Backend.commandComplete("LISTEN"), Backend.ready(.idle), to: server)
        let messages = a.drainMessages()
        XCTAssertEqual(ids(messages), "NCZ", "told with a NOTICE before the reply")
        XCTAssertEqual(messages.first?.errorFields["C"], "01000")
        XCTAssertEqual(h.handler(of: a)?.pin, .listen)
        XCTAssertEqual(h.pool.counts().active, 1, "pinned: the server stays with a")

        h.send(Frontend.query("SELECT 2"), to: b)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "b waits")
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 1"), "a keeps using its server")
        h.send(Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "CZ", "told once")

        h.send(Frontend.terminate(), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("DISCARD ALL"))
        h.send(Backend.commandComplete("DISCARD ALL"), Backend.ready(.idle), to: server)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("SELECT 2"), "then b gets it, clean")
    }

    func testAdvisoryLockInAPreparedStatementPins() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.parse("SELECT pg_advisory_lock(1)"), Frontend.bind(), Frontend.execute(), Frontend.sync(), to: a)
        _ = server.drainOutbound()
        h.send(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
               Backend.dataRow([""]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "N12DCZ")
        XCTAssertEqual(h.handler(of: a)?.pin, .advisoryLock)
        XCTAssertEqual(h.pool.counts().active, 1)
    }

    func testOrdinaryQueriesDoNotPin() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("SELECT 'LISTEN x', pg_advisory_xact_lock(1)"), to: a)
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "CZ")
        XCTAssertNil(h.handler(of: a)?.pin)
        XCTAssertEqual(h.pool.counts().idle, 1)
    }
}
