/// Seeded fuzzing of the client session with hostile bytes: random and mutated frontend messages (bad lengths,
/// unknown types, truncated payloads, random splits), before and after login, while a fake server answers whatever
/// reaches it. The pooler must never crash or hang, must answer or close, and must give every server connection
/// back to the pool once the client is gone. `HOSTILE_FUZZ_SECONDS=600` runs it for that long (docs/fuzzing.md).
import Foundation
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

final class HostileClientFuzzTests: XCTestCase {
    /// Valid frontend messages to mutate.
    private static let seeds: [ByteBuffer] = [
        Frontend.query("SELECT 1"), Frontend.query("BEGIN"), Frontend.query("LISTEN x"),
        Frontend.query("SET SERVER ROLE TO 'primary'"), Frontend.query("PREPARE p AS SELECT 1"),
        Frontend.query("DEALLOCATE ALL"), Frontend.parse(statement: "s1", "SELECT $1"), Frontend.parse("SELECT 2"),
        Frontend.bind(statement: "s1"), Frontend.bind(), Frontend.describeStatement("s1"), Frontend.execute(),
        Frontend.execute(portal: "", maxRows: 1), Frontend.sync(), Frontend.flush(), Frontend.copyData("x\n"),
        Frontend.copyDone(),
    ]

    private static func mutated(_ message: ByteBuffer, using rng: inout PoolRandom) -> [UInt8] {
        var bytes = Array(message.readableBytesView)
        switch Int.random(in: 0..<8, using: &rng) {
        case 0:  // a random length field
            let length = Int32.random(in: -10...100_000, using: &rng)
            withUnsafeBytes(of: length.bigEndian) { bytes.replaceSubrange(1..<min(5, bytes.count), with: $0) }
        case 1:  // an unknown or startup-phase type byte
            bytes[0] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // truncated
            bytes = Array(bytes.prefix(Int.random(in: 0..<max(1, bytes.count), using: &rng)))
        case 3:  // flipped payload bytes
            for _ in 0..<3 where bytes.count > 5 {
                bytes[Int.random(in: 5..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case 4:  // pure noise
            bytes = (0..<Int.random(in: 1...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        default:
            break  // valid
        }
        return bytes
    }

    /// One run: returns a description of a broken invariant, or nil.
    private func run(seed: UInt64) -> String? {
        var rng = PoolRandom(seed: seed)
        let h = PoolerHarness(.init(poolSize: 1, maxMessageSize: 4096))
        let loggedIn = Bool.random(using: &rng)
        let admin = loggedIn && Int.random(in: 0..<4, using: &rng) == 0
        let client: EmbeddedChannel
        var server: EmbeddedChannel?
        if admin {
            client = h.makeClient()
            h.send(Frontend.startup([("user", "admin"), ("database", "pgcat")]), to: client)
            _ = client.drainOutbound()
        } else if loggedIn {
            let pair = h.loginFirstClient()
            client = pair.client
            server = pair.server
        } else {
            client = h.makeClient()
        }
        var stream: [UInt8] = []
        for _ in 0..<Int.random(in: 1...12, using: &rng) {
            stream += Self.mutated(Self.seeds.randomElement(using: &rng)!, using: &rng)
        }
        // Random splits into reads; the fake server answers every read with a plausible reply.
        var offset = 0
        while offset < stream.count, client.isActive {
            let size = Int.random(in: 1...max(1, stream.count - offset), using: &rng)
            var chunk = ByteBuffer()
            chunk.writeBytes(stream[offset..<(offset + size)])
            offset += size
            _ = try? client.writeInbound(chunk)
            h.loop.run()
            _ = client.drainOutbound()
            for channel in h.serverChannels where channel.isActive {
                let sent = channel.drainOutbound()
                if sent.readableBytes > 0 {
                    _ = try? channel.writeInbound(concat(Backend.commandComplete("SELECT 1"), Backend.ready(.idle)))
                    h.loop.run()
                }
            }
            _ = client.drainOutbound()
        }
        // The client leaves: every server connection must be back in the pool (idle) or closed.
        _ = try? client.close().wait()
        h.loop.run()
        for channel in h.serverChannels where channel.isActive {
            if channel.drainOutbound().readableBytes > 0 {  // a cleanup (ROLLBACK, DISCARD ALL) to answer
                _ = try? channel.writeInbound(concat(Backend.commandComplete("ROLLBACK"), Backend.ready(.idle)))
                h.loop.run()
            }
        }
        h.loop.advanceTime(by: .seconds(11))  // cleanup timeout, if a cleanup got no answer
        let counts = h.pool.counts()
        defer {
            // An EmbeddedChannel that is never closed keeps itself and its handler alive (test-only cycles).
            for channel in h.serverChannels { _ = try? channel.close().wait() }
            h.loop.run()
            h.connector.forgetConnections()
        }
        if counts.active != 0 || counts.waiting != 0 {
            return "seed \(seed): pool not settled after the client left: \(counts) (logged in: \(loggedIn), "
                + "bytes: \(stream.prefix(64))...)"
        }
        _ = server
        return nil
    }

    func testHostileBytesNeverCrashHangOrLeak() {
        let seconds = Double(ProcessInfo.processInfo.environment["HOSTILE_FUZZ_SECONDS"] ?? "") ?? 0
        let deadline = Date().addingTimeInterval(seconds)
        var seed: UInt64 = 1
        var failures: [String] = []
        repeat {
            for _ in 0..<300 {
                if let failure = run(seed: seed) { failures.append(failure) }
                seed += 1
            }
            if seconds > 0 && seed % 30_000 == 1 { print("hostile client fuzz: \(seed - 1) runs so far") }
        } while Date() < deadline && failures.isEmpty
        if seconds > 0 { print("hostile client fuzz: \(seed - 1) runs in \(Int(seconds)) s, \(failures.count) failures") }
        XCTAssertTrue(failures.isEmpty, failures.prefix(3).joined(separator: "\n"))
    }
}
