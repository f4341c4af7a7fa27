/// Nothing outlives a client that has gone: its session, the server connection it used, and (once the harness is
/// dropped) the runtime and pool. A retained client would grow memory with every login (issue 9's flat soak).
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class RetentionTests: XCTestCase {
    func testAClientThatWaitedForItsFirstServerIsReleased() {
        weak var runtime: PoolerRuntime?
        weak var pool: ConnectionPool?
        weak var client: ClientConnection?
        weak var server: ServerConnection?
        do {
            let h = PoolerHarness(.init(poolSize: 1, maxMessageSize: 4096))
            runtime = h.runtime
            pool = h.pool
            let pair = h.loginFirstClient()  // waits in the pool's queue for the first connection
            client = h.handler(of: pair.client)
            server = try? pair.server.pipeline.syncOperations.handler(type: ServerConnection.self)
            h.send(Frontend.query("SELECT 1"), to: pair.client)
            h.send(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)), to: pair.server)
            _ = try? pair.client.close().wait()
            h.loop.run()
            XCTAssertNil(client, "the pool keeps a client that has gone")
            _ = try? pair.server.close().wait()
            h.loop.run()
            h.connector.forgetConnections()  // the fake connector records every ServerConnection it made
        }
        XCTAssertNil(server)
        XCTAssertNil(pool)
        XCTAssertNil(runtime)
    }

    func testAQueueOfWaitersIsReleasedOnceServed() {
        let h = PoolerHarness(.init(poolSize: 1, maxMessageSize: 4096))
        let first = h.loginFirstClient()
        var weakClients: [() -> ClientConnection?] = []
        var channels: [EmbeddedChannel] = []
        for _ in 0..<5 {
            let channel = h.loginClient()
            weak let handler = h.handler(of: channel)
            weakClients.append { handler }
            channels.append(channel)
        }
        // The first client holds the only connection inside a transaction; the others queue behind it.
        h.send(Frontend.query("BEGIN"), to: first.client)
        h.send(concat(Backend.commandComplete("BEGIN"), Backend.ready(.inTransaction)), to: first.server)
        for channel in channels { h.send(Frontend.query("SELECT 1"), to: channel) }
        h.send(Frontend.query("COMMIT"), to: first.client)
        h.send(concat(Backend.commandComplete("COMMIT"), Backend.ready(.idle)), to: first.server)
        for _ in channels {  // each queued client gets the connection in turn
            _ = first.server.drainOutbound()
            h.send(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)), to: first.server)
        }
        for channel in channels { _ = try? channel.close().wait() }
        channels.removeAll()
        h.loop.run()
        XCTAssertEqual(weakClients.compactMap { $0() }.count, 0, "served waiters are still referenced")
    }
}
