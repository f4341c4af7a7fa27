/// The admin console over the wire (EmbeddedChannel), and live reload through the runtime.
import Config
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class AdminConsoleHandlerTests: XCTestCase {
    typealias Options = PoolerHarness.Options

    private func adminLogin(_ h: PoolerHarness, user: String = "admin") -> (EmbeddedChannel, [WireMessage]) {
        let admin = h.makeClient()
        h.send(Frontend.startup([("user", user), ("database", "pgcat")]), to: admin)
        return (admin, admin.drainMessages())
    }

    private func rows(_ messages: [WireMessage]) -> [[String?]] {
        messages.filter { $0.id == BackendID.dataRow }.map { message in
            var payload = message.payload
            let count = Int(payload.readInteger(as: Int16.self) ?? 0)
            return (0..<count).map { _ in
                let length = Int(payload.readInteger(as: Int32.self) ?? -1)
                return length < 0 ? nil : payload.readString(length: length)
            }
        }
    }

    private func columns(_ messages: [WireMessage]) -> [(String, Int32)] {
        guard var payload = messages.first(where: { $0.id == BackendID.rowDescription })?.payload else { return [] }
        let count = Int(payload.readInteger(as: Int16.self) ?? 0)
        return (0..<count).map { _ in
            let name = payload.readNullTerminatedString() ?? ""
            let (_, _, oid, _, _, _) = payload.readMultipleIntegers(as: (Int32, Int16, Int32, Int16, Int32, Int16).self)!
            return (name, oid)
        }
    }

    func testAdminLoginAndShowPoolsWithALiveClient() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("BEGIN"), to: a)
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction), to: server)
        _ = a.drainOutbound()
        let b = h.loginClient()
        h.send(Frontend.query("SELECT 2"), to: b)  // waits: the only connection is a's

        let (admin, welcome) = adminLogin(h)
        XCTAssertEqual(welcome.last?.readyStatus, "I")
        XCTAssertTrue(welcome.contains { $0.parameterStatus?.name == "server_version" })

        h.send(Frontend.query("SHOW POOLS;"), to: admin)
        let pools = admin.drainMessages()
        XCTAssertEqual(ids(pools), "TDCZ")
        XCTAssertEqual(columns(pools).map(\.0), ["database", "user", "pool_mode", "cl_idle", "cl_active", "cl_waiting",
                                                 "cl_cancel_req", "sv_active", "sv_idle", "sv_used", "sv_tested",
                                                 "sv_login", "maxwait", "maxwait_us"])
        XCTAssertEqual(columns(pools)[3].1, 20, "counters are int8")
        let row = rows(pools)[0]
        XCTAssertEqual(row[0], "app")
        XCTAssertEqual(row[1], "alice")
        XCTAssertEqual(row[4], "1", "cl_active: a holds the connection")
        XCTAssertEqual(row[5], "1", "cl_waiting: b")
        XCTAssertEqual(row[7], "1", "sv_active")

        h.send(Frontend.query("SHOW CLIENTS"), to: admin)
        let clients = rows(admin.drainMessages())
        XCTAssertEqual(Set(clients.map { $0[4] }), ["active", "waiting"])
        XCTAssertTrue(clients.allSatisfy { ($0[0] ?? "").hasPrefix("0x") && $0[0]!.count == 10 })

        h.send(Frontend.query("SHOW DATABASES"), to: admin)
        let databases = admin.drainMessages()
        XCTAssertEqual(columns(databases).first(where: { $0.0 == "port" })?.1, 23, "port is int4")
        XCTAssertEqual(rows(databases)[0][0], "app_shard_0_primary")
    }

    func testExtendedProtocolOnTheAdminConsoleIsAnErrorThenSkipsToSync() {
        let h = PoolerHarness()
        let (admin, _) = adminLogin(h)
        h.send(Frontend.parse("SHOW POOLS"), Frontend.bind(), Frontend.execute(), Frontend.sync(), to: admin)
        let messages = admin.drainMessages()
        XCTAssertEqual(ids(messages), "EZ")
        XCTAssertEqual(messages.first?.errorFields["C"], "0A000")
        h.send(Frontend.query("SHOW VERSION"), to: admin)
        XCTAssertEqual(ids(admin.drainMessages()), "TDCZ", "still usable")
        h.send(Frontend.query("SELECT 1"), to: admin)
        let unsupported = admin.drainMessages()
        XCTAssertEqual(unsupported.first?.errorFields["M"], "Unsupported query against the admin database")
    }

    func testOnlyTheAdminUserGetsIn() {
        let h = PoolerHarness()
        let (_, messages) = adminLogin(h, user: "mallory")
        XCTAssertEqual(messages.last?.errorFields["C"], "28P01")
    }

    func testPauseHoldsNewTransactionsUntilResume() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        let (admin, _) = adminLogin(h)
        h.send(Frontend.query("PAUSE app,alice"), to: admin)
        XCTAssertEqual(ids(admin.drainMessages()), "CZ")
        XCTAssertEqual(server.drainOutbound(), Frontend.terminate(), "PAUSE closes idle connections")
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(server.drainOutbound().readableBytes, 0, "paused: the query waits")
        h.send(Frontend.query("RESUME app,alice"), to: admin)
        _ = admin.drainMessages()
        // PAUSE closed the idle connection; RESUME lets the waiter lease a new one.
        XCTAssertEqual(h.connector.connects.count, 2)
        let fresh = h.serverChannels[1]
        h.playServerStartup(fresh)
        XCTAssertEqual(fresh.drainOutbound(), Frontend.query("SELECT 1"))
    }

    func testReloadReplacesAChangedPoolAndClientsMoveAtTheirNextTransaction() {
        let h = PoolerHarness(Options(poolSize: 1))
        let (a, server) = h.loginFirstClient()
        h.send(Frontend.query("BEGIN"), to: a)
        _ = server.drainOutbound()
        h.send(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction), to: server)
        _ = a.drainOutbound()
        let old = h.pool

        var config = PoolerHarness.config(Options(poolSize: 3))
        config.general.adminUsername = "admin"
        config.general.adminAuthType = .trust
        guard case .success(let summary) = h.runtime.apply(config) else { return XCTFail("reload refused") }
        XCTAssertEqual(summary.poolsReplaced, 1)
        XCTAssertTrue(old.isRetired)
        XCTAssertEqual(h.pool.settings.poolSize, 3)
        XCTAssertTrue(h.pool.statementNames === old.statementNames, "statement names carry over")

        // a's transaction finishes on the old pool, whose connection then closes.
        h.send(Frontend.query("COMMIT"), to: a)
        XCTAssertEqual(server.drainOutbound(), Frontend.query("COMMIT"))
        h.send(Backend.commandComplete("COMMIT"), Backend.ready(.idle), to: server)
        XCTAssertEqual(ids(a.drainMessages()), "CZ")
        XCTAssertFalse(server.isActive, "the retired pool closes its connection when it comes back")
        // The next transaction leases from the new pool.
        h.send(Frontend.query("SELECT 1"), to: a)
        XCTAssertEqual(h.connector.connects.count, 2)
    }

    func testReloadRefusesAPortChangeAndKeepsTheConfig() {
        let h = PoolerHarness()
        var config = h.runtime.config
        config.general.port += 1
        guard case .failure(let error) = h.runtime.apply(config) else { return XCTFail("accepted a port change") }
        XCTAssertTrue(error.message.contains("port"))
        XCTAssertEqual(h.runtime.config.general.port, config.general.port - 1)
    }

    func testUnchangedReloadKeepsThePools() {
        let h = PoolerHarness()
        let pool = h.pool
        guard case .success(let summary) = h.runtime.apply(h.runtime.config) else { return XCTFail() }
        XCTAssertFalse(summary.changed)
        var config = h.runtime.config
        config.general.logClientConnections.toggle()  // a general change that no pool depends on
        guard case .success(let second) = h.runtime.apply(config) else { return XCTFail() }
        XCTAssertEqual(second.poolsReplaced, 0)
        XCTAssertTrue(h.pool === pool)
    }

    func testAClientThatNeverLogsInIsClosedAfterClientLoginTimeout() {
        let h = PoolerHarness()
        let silent = h.makeClient()
        h.loop.advanceTime(by: .seconds(59))
        XCTAssertTrue(silent.isActive, "not yet")
        h.loop.advanceTime(by: .seconds(2))
        let messages = silent.drainMessages()
        XCTAssertEqual(messages.last?.errorFields["C"], "28000")
        XCTAssertFalse(silent.isActive)

        // A client that logged in is not affected.
        let (client, _) = h.loginFirstClient()
        h.loop.advanceTime(by: .seconds(120))
        XCTAssertTrue(client.isActive)
    }
}
