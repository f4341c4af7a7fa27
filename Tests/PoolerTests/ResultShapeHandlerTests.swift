/// Handler tests for the result-shape check: a statement the client described is described again by the pooler
/// before it runs on a server connection whose copy was prepared without the client, and a changed shape gets
/// PostgreSQL's 0A000 instead of rows the client would decode by the old description.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class ResultShapeHandlerTests: XCTestCase {
    typealias Options = PoolerHarness.Options

    private let sql = "SELECT * FROM t"

    /// Client `a` prepares and describes `s1` (PGCAT_1 on the server): its shape is columns a, b.
    private func prepareAndDescribe(_ h: PoolerHarness, _ a: EmbeddedChannel, on server: EmbeddedChannel) {
        h.send(Frontend.parse(statement: "s1", sql), Frontend.describeStatement("s1"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse(statement: "PGCAT_1", sql),
                                                      Frontend.describeStatement("PGCAT_1"), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(),
               Backend.rowDescription(["a", "b"]), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1tTZ")
    }

    /// The client's server connection is lost while idle; its next request opens a new one (login played).
    private func replaceServer(_ h: PoolerHarness, _ server: EmbeddedChannel, then send: () -> Void) -> EmbeddedChannel {
        server.close(promise: nil)
        h.loop.run()
        let before = h.serverChannels.count
        send()
        XCTAssertEqual(h.serverChannels.count, before + 1, "a new server connection")
        let fresh = h.serverChannels[before]
        h.playServerStartup(fresh)
        return fresh
    }

    /// A client that prepared and described `s1`, whose Bind of it, on a new server connection (the first one
    /// lost), is held while the pooler prepares and describes the copy there (those drained and checked).
    private func heldBindOnANewConnection(file: StaticString = #filePath, line: UInt = #line)
        -> (PoolerHarness, EmbeddedChannel, EmbeddedChannel) {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepareAndDescribe(h, a, on: server)
        let fresh = replaceServer(h, server) {
            h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        }
        XCTAssertEqual(fresh.drainOutbound(), preparedAgainAndDescribed, "the Bind is held back", file: file, line: line)
        return (h, a, fresh)
    }

    private var preparedAgainAndDescribed: ByteBuffer {
        concat(Frontend.parse(statement: "PGCAT_1", sql), Frontend.describeStatement("PGCAT_1"), Frontend.flush())
    }

    private var bindExecuteSync: ByteBuffer {
        concat(Frontend.bind(statement: "PGCAT_1"), Frontend.execute(), Frontend.sync())
    }

    func testTheBindWaitsForThePoolersDescribeAndRunsWhenTheShapeIsTheSame() {
        let (h, a, fresh) = heldBindOnANewConnection()
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(), to: fresh)
        XCTAssertEqual(fresh.drainOutbound().readableBytes, 0, "still held: the shape is not in yet")
        h.send(Backend.rowDescription(["a", "b"]), to: fresh)
        XCTAssertEqual(fresh.drainOutbound(), bindExecuteSync)
        XCTAssertEqual(ids(a.drainMessages()), "", "the pooler's own Describe is not answered to the client")
        h.send(Backend.empty(BackendID.bindComplete), Backend.dataRow(["1", "2"]), Backend.commandComplete("SELECT 1"),
               Backend.ready(.idle), to: fresh)
        XCTAssertEqual(ids(a.drainMessages()), "2DCZ")

        // The copy's shape is known now: the next Bind goes straight on.
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(fresh.drainOutbound(), bindExecuteSync)
    }

    func testAChangedShapeIsRefusedWithPostgresqlsError() {
        let (h, a, fresh) = heldBindOnANewConnection()
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(),
               Backend.rowDescription(["b", "a"]), to: fresh)
        // Neither the Bind nor the Execute reaches the server: a Parse meant to fail makes it fail the unit.
        var sent = fresh.drainMessages()
        XCTAssertEqual(ids(sent), "PS")
        XCTAssertEqual(sent.removeFirst().payload.getString(at: 0, length: 14), "pgcat_refused\0")
        h.send(Backend.error(SQLState("42601"), "syntax error"), Backend.ready(.idle), to: fresh)
        let reply = a.drainMessages()
        XCTAssertEqual(ids(reply), "EZ")
        XCTAssertEqual(reply.first?.errorFields["C"], "0A000")
        XCTAssertEqual(reply.first?.errorFields["M"], "cached plan must not change result type")
        XCTAssertEqual(reply.first?.errorFields["R"], "RevalidateCachedQuery")
        XCTAssertEqual(h.pool.counts().idle, 1, "the connection is released")
    }

    func testALostServerWhileTheBindIsHeldFailsTheRequestAndTheClientGoesOn() {
        let (h, a, fresh) = heldBindOnANewConnection()
        fresh.close(promise: nil)
        h.loop.run()
        let reply = a.drainMessages()
        XCTAssertEqual(ids(reply), "EZ", "the held request fails with the connection")
        XCTAssertEqual(reply.first?.errorFields["C"], "08006")

        let third = replaceServer(h, fresh) { h.send(Frontend.query("SELECT 1"), to: a) }
        XCTAssertEqual(third.drainOutbound(), Frontend.query("SELECT 1"), "nothing waits for the lost server")
        h.send(Backend.rowDescription(["?column?"]), Backend.dataRow(["1"]), Backend.commandComplete("SELECT 1"),
               Backend.ready(.idle), to: third)
        XCTAssertEqual(ids(a.drainMessages()), "TDCZ")
    }

    func testClientsThatNeverDescribeAreNotHeld() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.parse(statement: "s1", sql), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse(statement: "PGCAT_1", sql), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1Z")
        let fresh = replaceServer(h, server) {
            h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        }
        XCTAssertEqual(fresh.drainOutbound(), concat(Frontend.parse(statement: "PGCAT_1", sql), bindExecuteSync))
    }

    func testThePoolersOwnErrorReportsTheOtherCopiesStaleOncePerChange() {
        let (h, a, fresh) = heldBindOnANewConnection()
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(),
               Backend.rowDescription(["b", "a"]), to: fresh)
        _ = fresh.drainOutbound()
        h.send(Backend.error(SQLState("42601"), "syntax error"), Backend.ready(.idle), to: fresh)
        XCTAssertEqual(ids(a.drainMessages()), "EZ")
        XCTAssertEqual(h.pool.statementNames.staleReports, 1, "copies planned against the old schema are suspect")

        // The client keeps binding its old statement: the copy is prepared afresh and described each time (its
        // recorded shape might be older than the client's statement), refused, and reported no more.
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(fresh.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), preparedAgainAndDescribed))
        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.parameterDescription(), Backend.rowDescription(["b", "a"]), to: fresh)
        XCTAssertEqual(ids(fresh.drainMessages()), "PS", "refused (the Parse meant to fail, the Sync)")
        h.send(Backend.error(SQLState("42601"), "syntax error"), Backend.ready(.idle), to: fresh)
        XCTAssertEqual(a.drainMessages().first?.errorFields["C"], "0A000")
        XCTAssertEqual(h.pool.statementNames.staleReports, 1)
    }

    func testACopyDescribedWithAnotherShapeIsPreparedAfreshBeforeItIsJudged() {
        // A copy's recorded shape may be older than the client's statement: the pooler does not refuse on it, it
        // prepares the copy again and compares with that.
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepareAndDescribe(h, a, on: server)
        let b = h.loginClient()
        h.send(Frontend.parse(statement: "t1", sql), Frontend.describeStatement("t1"), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), Frontend.parse(statement: "PGCAT_1", sql),
                                                      Frontend.describeStatement("PGCAT_1"), Frontend.sync()),
                       "b's Parse is answered by the pooler, and its first use prepares the copy afresh")
        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.parameterDescription(), Backend.rowDescription(["c"]), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(b.drainMessages()), "1tTZ")

        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), preparedAgainAndDescribed))
        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.parameterDescription(), Backend.rowDescription(["a", "b"]), to: server)
        XCTAssertEqual(server.drainOutbound(), bindExecuteSync, "the fresh copy has a's shape: it runs")
        h.send(Backend.empty(BackendID.bindComplete), Backend.commandComplete("SELECT 0"), Backend.ready(.idle),
               to: server)
        XCTAssertEqual(ids(a.drainMessages()), "2CZ")
    }

    func testADescribeOfOneNameDoesNotChangeWhatAnotherNameOfTheSameTextKnows() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        prepareAndDescribe(h, a, on: server)
        h.send(Frontend.parse(statement: "s2", sql), Frontend.describeStatement("s2"), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), Frontend.parse(statement: "PGCAT_1", sql),
                                                      Frontend.describeStatement("PGCAT_1"), Frontend.sync()))
        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.parameterDescription(), Backend.rowDescription(["a", "b"]), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1tTZ")

        // The schema changes; s2 is described again (as a driver preparing anew would) on a new connection.
        let fresh = replaceServer(h, server) {
            h.send(Frontend.describeStatement("s2"), Frontend.sync(), to: a)
        }
        XCTAssertEqual(fresh.drainOutbound(), concat(Frontend.parse(statement: "PGCAT_1", sql),
                                                     Frontend.describeStatement("PGCAT_1"), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(),
               Backend.rowDescription(["b", "a"]), Backend.ready(.idle), to: fresh)
        XCTAssertEqual(ids(a.drainMessages()), "tTZ")
        // s1 still knows a, b: its Bind is checked against a fresh copy and refused.
        h.send(Frontend.bind(statement: "s1"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(fresh.drainOutbound(), concat(Frontend.closeStatement("PGCAT_1"), preparedAgainAndDescribed))
        h.send(Backend.empty(BackendID.closeComplete), Backend.empty(BackendID.parseComplete),
               Backend.parameterDescription(), Backend.rowDescription(["b", "a"]), to: fresh)
        XCTAssertEqual(ids(fresh.drainMessages()), "PS")
        h.send(Backend.error(SQLState("42601"), "syntax error"), Backend.ready(.idle), to: fresh)
        XCTAssertEqual(a.drainMessages().first?.errorFields["C"], "0A000")
        // s2 runs.
        h.send(Frontend.bind(statement: "s2"), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(fresh.drainOutbound(), bindExecuteSync)
    }

    func testStatementsWithoutRowsAreNotHeld() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let insert = "INSERT INTO t VALUES ($1)"
        h.send(Frontend.parse(statement: "w", insert), Frontend.describeStatement("w"), Frontend.sync(), to: a)
        _ = server.drainOutbound()
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription(), Backend.empty(BackendID.noData),
               Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1tnZ")
        let fresh = replaceServer(h, server) {
            h.send(Frontend.bind(statement: "w"), Frontend.execute(), Frontend.sync(), to: a)
        }
        XCTAssertEqual(fresh.drainOutbound(), concat(Frontend.parse(statement: "PGCAT_1", insert), bindExecuteSync))
    }
}
