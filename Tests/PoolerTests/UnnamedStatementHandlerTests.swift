/// Handler tests for the unnamed statement in transaction mode: a Bind in a later transaction meets this client's
/// own statement, never the one another client left on the server connection.
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class UnnamedStatementHandlerTests: XCTestCase {
    typealias Options = PoolerHarness.Options

    private func closeUnnamed() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.close, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "S"))
            $0.writeInteger(UInt8(0))
        }
        return buffer
    }

    func testABindInALaterTransactionRunsTheClientsOwnStatement() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()

        // b prepares its unnamed statement and describes it (lib/pq's way); the Sync ends the transaction.
        h.send(Frontend.parse("SELECT $1::text"), Frontend.describeStatement(), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.parse("SELECT $1::text"), Frontend.describeStatement(), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.parameterDescription([25]),
               Backend.rowDescription(["text"]), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(b.drainMessages()), "1tTZ")

        // a leaves its own unnamed UPDATE on the same server connection.
        h.send(Frontend.parse("UPDATE t SET v = $1"), Frontend.bind(), Frontend.execute(), Frontend.sync(), to: a)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse("UPDATE t SET v = $1"), Frontend.bind(),
                                                      Frontend.execute(), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
               Backend.commandComplete("UPDATE 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "12CZ")

        // b binds: its SELECT is prepared again first, and its reply stays out of b's answer.
        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse("SELECT $1::text"), Frontend.bind(),
                                                      Frontend.execute(), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
               Backend.dataRow(["x"]), Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(b.drainMessages()), "2DCZ")

        // Again on the same connection, still b's statement there: nothing to add.
        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse("SELECT $1::text"), Frontend.bind(),
                                                      Frontend.execute(), Frontend.sync()),
                       "a new lease does not know what the connection holds: b's statement is prepared again")
        h.send(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
               Backend.commandComplete("SELECT 0"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(b.drainMessages()), "2CZ")

        // Within one transaction nothing is added.
        h.send(Frontend.parse("SELECT 1"), Frontend.bind(), Frontend.execute(), Frontend.bind(), Frontend.execute(),
               Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(Frontend.parse("SELECT 1"), Frontend.bind(), Frontend.execute(),
                                                      Frontend.bind(), Frontend.execute(), Frontend.sync()))
    }

    func testABindInALaterUnitOfTheSameLeaseIsPrecededByTheClientsParse() {
        // One write, two units: if the first unit failed before its Parse, the server would skip it, and the second
        // unit's Bind would meet whatever unnamed statement the connection held before.
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.parse("SELECT $1::int"), Frontend.sync(), Frontend.bind(), Frontend.execute(), Frontend.sync(),
               to: a)
        XCTAssertEqual(server.drainOutbound(),
                       concat(Frontend.parse("SELECT $1::int"), Frontend.sync(), Frontend.parse("SELECT $1::int"),
                              Frontend.bind(), Frontend.execute(), Frontend.sync()))
        h.send(Backend.empty(BackendID.parseComplete), Backend.ready(.idle), Backend.empty(BackendID.parseComplete),
               Backend.empty(BackendID.bindComplete), Backend.commandComplete("SELECT 1"), Backend.ready(.idle),
               to: server)
        XCTAssertEqual(ids(a.drainMessages()), "1Z2CZ", "the injected Parse's reply is not the client's")
    }

    func testAClientWithoutAnUnnamedStatementGetsTheServersError() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let b = h.loginClient()
        h.send(Frontend.parse("UPDATE t SET v = $1"), Frontend.bind(), Frontend.execute(), Frontend.sync(), to: a)
        _ = server.drainOutbound()
        h.send(Backend.empty(BackendID.parseComplete), Backend.empty(BackendID.bindComplete),
               Backend.commandComplete("UPDATE 1"), Backend.ready(.idle), to: server)
        _ = a.drainMessages()

        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(closeUnnamed(), Frontend.bind(), Frontend.execute(), Frontend.sync()),
                       "a's UPDATE must not run for b")
        h.send(Backend.empty(BackendID.closeComplete),
               Backend.error(SQLState("26000"), "unnamed prepared statement does not exist"), Backend.ready(.idle),
               to: server)
        let reply = b.drainMessages()
        XCTAssertEqual(ids(reply), "EZ")
        XCTAssertEqual(reply.first?.errorFields["C"], "26000")

        // A simple Query drops the unnamed statement, as in Postgres.
        h.send(Frontend.parse("SELECT 1"), Frontend.sync(), to: b)
        _ = server.drainOutbound()
        h.send(Backend.empty(BackendID.parseComplete), Backend.ready(.idle), to: server)
        _ = b.drainMessages()
        h.send(Frontend.query("SELECT 2"), to: b)
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("SELECT 1"), Backend.ready(.idle), to: server)
        _ = b.drainMessages()
        h.send(Frontend.bind(), Frontend.execute(), Frontend.sync(), to: b)
        XCTAssertEqual(server.drainOutbound(), concat(closeUnnamed(), Frontend.bind(), Frontend.execute(), Frontend.sync()))
    }
}
